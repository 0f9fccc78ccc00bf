//! The iceoryx2 side of `crates/conduit-python/bench.py --with-iceoryx2`:
//! the same ping-pong as conduit's `rust_peer bounce` / `rust_peer
//! measure`, with iceoryx2 0.10 `[u8]` publish/subscribe services, so the
//! Python figure of iceoryx2's own binding (`pip install iceoryx2`) sits
//! next to its Rust-to-Rust figure, measured the same way.
//!
//! * `iceoryx2_py_peer bounce PREFIX`: subscribes to `PREFIX/ping`,
//!   copies every payload into a loan on `PREFIX/pong` (an empty payload
//!   ends it); prints `ready` once both ports exist.
//! * `iceoryx2_py_peer measure PREFIX SIZE ROUNDS`: the Rust measuring
//!   side: loan SIZE bytes on `PREFIX/ping`, copy the payload in, send,
//!   busy-poll `PREFIX/pong` for the echo, copy it out, drop it; prints
//!   `median_ns N` (the median round trip, every round trip timed, the
//!   first tenth discarded as warm-up), and ends the bounce with an empty
//!   payload.
//!
//! Both sides busy-poll (iceoryx2 has no blocking receive without an
//! event service); default service settings on both sides, so Python's
//! `open_or_create` meets them.

use iceoryx2::prelude::*;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn services(node: &Node<ipc::Service>, prefix: &str) -> Res<(PingService, PingService)> {
    let open = |dir: &str| -> Res<PingService> {
        Ok(node
            .service_builder(&ServiceName::new(&format!("{prefix}/{dir}"))?)
            .publish_subscribe::<[u8]>()
            .open_or_create()?)
    };
    Ok((open("ping")?, open("pong")?))
}

type PingService =
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args.first().map(String::as_str).unwrap_or("");
    let prefix = args.get(1).ok_or("a service prefix is required")?;
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let (ping, pong) = services(&node, prefix)?;
    match role {
        "bounce" => {
            let sub = ping.subscriber_builder().create()?;
            let publisher = pong
                .publisher_builder()
                .initial_max_slice_len(1 << 20)
                .create()?;
            println!("ready");
            loop {
                let Some(sample) = sub.receive()? else {
                    std::hint::spin_loop();
                    continue;
                };
                if sample.payload().is_empty() {
                    break;
                }
                let loan = publisher.loan_slice_uninit(sample.payload().len())?;
                loan.write_from_slice(sample.payload()).send()?;
            }
        }
        "measure" => {
            let size: usize = args.get(2).ok_or("measure needs a size")?.parse()?;
            let rounds: usize = args.get(3).ok_or("measure needs rounds")?.parse()?;
            let sub = pong.subscriber_builder().create()?;
            let publisher = ping
                .publisher_builder()
                .initial_max_slice_len(1 << 20)
                .create()?;
            let payload = vec![7u8; size];
            let mut out = vec![0u8; size];
            let mut samples = Vec::with_capacity(rounds);
            for i in 0..rounds + rounds / 10 {
                let start = std::time::Instant::now();
                let loan = publisher.loan_slice_uninit(size)?;
                loan.write_from_slice(&payload).send()?;
                let echo = loop {
                    if let Some(s) = sub.receive()? {
                        break s;
                    }
                    std::hint::spin_loop();
                };
                out.copy_from_slice(echo.payload());
                drop(echo);
                if i >= rounds / 10 {
                    samples.push(start.elapsed().as_nanos() as u64);
                }
            }
            std::hint::black_box(&out);
            // An empty payload ends the bounce.
            publisher.loan_slice_uninit(0)?.write_from_slice(&[]).send()?;
            samples.sort_unstable();
            println!("median_ns {}", samples[samples.len() / 2]);
        }
        other => {
            eprintln!("iceoryx2_py_peer: unknown role {other:?} (bounce PREFIX | measure PREFIX SIZE ROUNDS)");
            std::process::exit(2);
        }
    }
    Ok(())
}
