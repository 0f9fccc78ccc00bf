"""Python-to-Rust publish/subscribe latency next to Rust-to-Rust, one run.

    python3 crates/conduit-python/bench.py PATH/TO/rust_peer [--quick]

(with the `conduit` package importable: an installed wheel, or the tests'
layout). A `rust_peer bounce` process on CPU 1 copies every payload of
`bench/ping` into a loan on `bench/pong`. The measuring side, on CPU 0,
is this Python process, then `rust_peer measure` (Rust), doing the same
round trips: loan SIZE bytes, copy the payload in, send, receive the echo,
copy it out (`bytes(memoryview(sample))` in Python, `copy_from_slice` in
Rust), release. Figure: the median round trip / 2 (one-way), per round
trip timed; the ratio is Python / Rust of the same run.
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


if __name__ == "__main__":
    main()
