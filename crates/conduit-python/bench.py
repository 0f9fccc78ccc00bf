"""Python-to-Rust publish/subscribe latency next to Rust-to-Rust, one run.

    python3 crates/conduit-python/bench.py PATH/TO/rust_peer [--quick]
        [--iceoryx2 PATH/TO/iceoryx2_py_peer]

(with the `conduit` package importable: an installed wheel, or the tests'
layout). A `rust_peer bounce` process on CPU 1 copies every payload of
`bench/ping` into a loan on `bench/pong`. The measuring side, on CPU 0,
is this Python process, then `rust_peer measure` (Rust), doing the same
round trips: loan SIZE bytes, copy the payload in, send, receive the echo,
copy it out (`bytes(memoryview(sample))` in Python, `copy_from_slice` in
Rust), release. Figure: the median round trip / 2 (one-way), per round
trip timed; the ratio is Python / Rust of the same run.

With `--iceoryx2` (and `pip install iceoryx2==0.10.0`; the peer is built by
`cargo build --release --manifest-path crates/bench-peers/Cargo.toml --bin
iceoryx2_py_peer`), the same two rows for iceoryx2's own Python binding in
the same run: this process ping-pongs through iceoryx2 `[u8]` services
with `iceoryx2_py_peer bounce` on CPU 1 (loan, copy in through the
sample's memoryview, send; busy-poll the echo, copy it out with
`bytes(...)`, drop it), then `iceoryx2_py_peer measure` does the same in
Rust. iceoryx2 has no blocking receive without an event service, so both
of its sides busy-poll (conduit's `receive()` spins for 50 us before it
sleeps: also busy at these round-trip times).
"""

import os
import subprocess
import sys
import time

import conduit

SIZES = [8, 64 * 1024, 1024 * 1024]


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass


def bounce(peer, domain):
    p = subprocess.Popen(["taskset", "-c", "1", peer, "bounce", domain], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def stop(p, node):
    """Ends the bounce process (an empty payload), or kills it."""
    try:
        stopper = node.publish_subscribe("bench/ping").publisher()
        deadline = time.monotonic() + 10
        while stopper.send(b"") == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def python_round_trips(node, size, rounds):
    ping = node.publish_subscribe("bench/ping").publisher(max_slice_len=1 << 20)
    sub = node.publish_subscribe("bench/pong").subscriber()
    payload = bytes([7]) * size
    # No wait for connections: a send connects the sender to the
    # subscribers that exist (the bounce's before it said ready, ours
    # before the first ping); the first tenth of the rounds is warm-up.
    samples = []
    clock = time.perf_counter_ns
    for i in range(rounds + rounds // 10):
        start = clock()
        with ping.loan(size) as loan:
            memoryview(loan)[:] = payload
            loan.send()
        echo = sub.receive()
        view = memoryview(echo)
        out = bytes(view)
        view.release()
        echo.release()
        if i >= rounds // 10:
            samples.append(clock() - start)
    assert len(out) == size
    samples.sort()
    return samples[len(samples) // 2]


def iceoryx2_round_trips(peer, size, rounds):
    """Python <-> Rust and Rust <-> Rust through iceoryx2, in ns (medians)."""
    import ctypes

    import iceoryx2 as iox2

    prefix = f"conduit-pybench/{os.getpid()}-{size}"
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)

    def service(direction):
        return (
            node.service_builder(iox2.ServiceName.new(f"{prefix}/{direction}"))
            .publish_subscribe(iox2.Slice[ctypes.c_uint8])
            .open_or_create()
        )

    ping, pong = service("ping"), service("pong")
    publisher = ping.publisher_builder().initial_max_slice_len(1 << 20).create()
    sub = pong.subscriber_builder().create()

    def start_bounce():
        p = subprocess.Popen(["taskset", "-c", "1", peer, "bounce", prefix], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        return p

    def stop_bounce(p):
        try:
            end = publisher.loan_slice_uninit(0)
            end.assume_init().send()
            p.wait(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()

    payload = bytes([7]) * size
    p = start_bounce()
    try:
        samples = []
        clock = time.perf_counter_ns
        for i in range(rounds + rounds // 10):
            start = clock()
            loan = publisher.loan_slice_uninit(size)
            # iceoryx2's memoryview has format '<B', which slice
            # assignment refuses: the same memcpy through ctypes.
            ctypes.memmove(loan.payload().as_ptr(), payload, size)
            loan.assume_init().send()
            while True:
                echo = sub.receive()
                if echo is not None:
                    break
            out = bytes(echo.payload().as_memory_view())
            echo.delete()
            if i >= rounds // 10:
                samples.append(clock() - start)
        assert len(out) == size
        samples.sort()
        py = samples[len(samples) // 2]
    finally:
        stop_bounce(p)
    # The Rust measuring side opens its own publisher and subscriber.
    publisher.delete()
    sub.delete()
    rust_prefix = prefix + "-rust"
    p = subprocess.Popen(["taskset", "-c", "1", peer, "bounce", rust_prefix], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    try:
        out = subprocess.run(
            ["taskset", "-c", "0", peer, "measure", rust_prefix, str(size), str(rounds)],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout
    finally:
        try:
            p.wait(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
    return py, int(out.split()[-1])


def main():
    peer = sys.argv[1]
    quick = "--quick" in sys.argv
    domain = f"pybench-{os.getpid()}"
    pin(0)
    node = conduit.Node(name="py-bench", domain=domain)
    print(f"{'payload':>10}  {'Python <-> Rust':>16}  {'Rust <-> Rust':>14}  {'ratio':>6}")
    for size in SIZES:
        rounds = (2000 if size <= 65536 else 300) // (10 if quick else 1)
        p = bounce(peer, domain)
        try:
            py = python_round_trips(node, size, rounds)
        finally:
            stop(p, node)
        p = bounce(peer, domain)
        try:
            out = subprocess.run(
                ["taskset", "-c", "0", peer, "measure", domain, str(size), str(rounds)],
                capture_output=True, text=True, check=True, timeout=120,
            ).stdout
        finally:
            stop(p, node)
        rust = int(out.split()[-1])
        print(f"{size:>10}  {py / 2 / 1000:>13.2f} us  {rust / 2 / 1000:>11.2f} us  {py / rust:>5.2f}x")
    print("one-way = median round trip / 2; same payload work on both sides (memcpy in, memcpy out)")
    if "--iceoryx2" in sys.argv:
        iox_peer = sys.argv[sys.argv.index("--iceoryx2") + 1]
        print()
        print(f"{'payload':>10}  {'iceoryx2 Py<->Rust':>18}  {'iceoryx2 Rust<->Rust':>20}  {'ratio':>6}")
        for size in SIZES:
            rounds = (2000 if size <= 65536 else 300) // (10 if quick else 1)
            py, rust = iceoryx2_round_trips(iox_peer, size, rounds)
            print(f"{size:>10}  {py / 2 / 1000:>15.2f} us  {rust / 2 / 1000:>17.2f} us  {py / rust:>5.2f}x")
        print("iceoryx2 0.10 (pip wheel and bench-peers), both sides busy-polling; same payload work")


if __name__ == "__main__":
    main()
