//! iceoryx2 0.10's blackboard under the same measurement as conduit's
//! (`conduit_bench::blackboard`): reads of an unchanged 8-byte entry, reads
//! while a writer process on CPU 1 updates it, updates alone and with a
//! reader process on CPU 1 (continuous, and every 1 µs), each next to the
//! plain shared-memory load baselines of the same run, with the same
//! dependent-read chain, batches and statistic (median of batch means).
//!
//! `cargo run --release --manifest-path crates/bench-peers/Cargo.toml --bin
//! iceoryx2_blackboard [-- --quick] [--json]`
//!
//! `--json` prints the rows in `conduit bench --json`'s format, which
//! `conduit bench --peers FILE` (and `--with-iceoryx2`) adds to its table.
//!
//! The service: `blackboard_creator::<u32>().add::<u64>(0, 0)`; reads are
//! `EntryHandle::get` (a copy of the value), updates
//! `EntryHandleMut::update_with_copy`.

use std::cell::OnceCell;

use bench_peers::Domain;
use conduit_bench::blackboard::{Bench, Subject, peer_loop};
use conduit_bench::harness::{self, Plan};
use iceoryx2::port::reader::{EntryHandle, Reader};
use iceoryx2::port::writer::{EntryHandleMut, Writer};
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::blackboard::PortFactory;

const PEER_ROLE: &str = "iceoryx2-blackboard-peer";

struct Iceoryx2 {
    name: String,
    domain_args: [String; 2],
    reader: OnceCell<Reader<ipc::Service, u32>>,
    writer: OnceCell<Writer<ipc::Service, u32>>,
    service: PortFactory<ipc::Service, u32>,
    _node: Node<ipc::Service>,
}

impl Iceoryx2 {
    fn new(domain: &Domain, name: &str, create: bool) -> Iceoryx2 {
        let node = NodeBuilder::new()
            .config(domain.config())
            .create::<ipc::Service>()
            .expect("node");
        let service_name = ServiceName::new(name).expect("service name");
        let builder = node.service_builder(&service_name);
        let service = if create {
            builder
                .blackboard_creator::<u32>()
                .add::<u64>(0, 0)
                .create()
                .expect("create blackboard")
        } else {
            builder
                .blackboard_opener::<u32>()
                .open()
                .expect("open blackboard")
        };
        Iceoryx2 {
            name: name.to_owned(),
            domain_args: domain.to_args(),
            reader: OnceCell::new(),
            writer: OnceCell::new(),
            service,
            _node: node,
        }
    }
}

impl Subject for Iceoryx2 {
    const NAME: &'static str = "iceoryx2 blackboard";
    type Read<'a> = EntryHandle<ipc::Service, u32, u64>;
    type Write<'a> = EntryHandleMut<ipc::Service, u32, u64>;
    fn read(&self) -> Self::Read<'_> {
        self.reader
            .get_or_init(|| self.service.reader_builder().create().expect("reader"))
            .entry::<u64>(&0)
            .expect("entry")
    }
    fn get(read: &Self::Read<'_>) -> u64 {
        *read.get()
    }
    fn write(&self) -> Self::Write<'_> {
        self.writer
            .get_or_init(|| self.service.writer_builder().create().expect("writer"))
            .entry::<u64>(&0)
            .expect("entry")
    }
    fn update(write: &Self::Write<'_>, value: u64) {
        write.update_with_copy(value);
    }
    fn peer_args(&self) -> Vec<String> {
        let [prefix, root] = self.domain_args.clone();
        vec![self.name.clone(), prefix, root]
    }
}

/// Child: opens the blackboard and runs the loop `Bench` asked for.
fn peer(args: &[String]) {
    set_log_level(LogLevel::Warn);
    let domain = Domain::from_args(&args[3], &args[4]);
    let subject = Iceoryx2::new(&domain, &args[2], false);
    peer_loop(&subject, args);
}

fn main() {
    harness::child_main_if_requested_with(&[(PEER_ROLE, peer)]);
    set_log_level(LogLevel::Warn);
    let options = harness::Options::from_args();
    harness::setup_parent();
    // The same operation counts as `conduit bench --only blackboard`.
    let ops = if options.quick { 1_000_000 } else { 5_000_000 };
    let plan = Plan::busy(ops / 10, ops, 1000);
    let domain = Domain::create();
    let name = format!("conduit-bench/blackboard/{}", std::process::id());
    let bench = Bench::new(Iceoryx2::new(&domain, &name, true), PEER_ROLE);
    let figures = bench.measure(&plan, false);
    drop(bench.into_subject());
    drop(domain);
    if options.json {
        print!("{}", figures.json_lines());
    } else {
        println!("iceoryx2 0.10 blackboard, u32 -> u64, median of batch means (1000 ops)");
        for c in &figures.costs {
            println!("{:>10.1} ns  {}", c.ns, c.name);
        }
        for r in &figures.ratios {
            let met = match r.met {
                Some(true) => " (met)",
                Some(false) => " (not met)",
                None => "",
            };
            println!("{:>10.2} x   {}{met}", r.value, r.name);
        }
    }
}
