"""Tests of the Python binding, across real processes: Python with Python
(a child interpreter, killed with SIGKILL while it holds shared memory) and
Python with Rust (the `rust_peer` example).

Run by `cargo test -p conduit-python` (tests/python.rs), which builds the
extension module and sets:

* CONDUIT_TEST_DOMAIN: a domain private to this run;
* CONDUIT_RUST_PEER: the path of the `rust_peer` example binary;
* PYTHONPATH: a directory holding the `conduit` package.
"""

import ctypes
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import unittest

import conduit

DOMAIN = os.environ["CONDUIT_TEST_DOMAIN"]
PEER = os.environ["CONDUIT_RUST_PEER"]


class Peer:
    """A rust_peer process, waited for until it prints `ready`; killed at
    the end of the test if it is still running."""

    def __init__(self, test, *args):
        test.addCleanup(self.kill)
        self.proc = subprocess.Popen(
            [PEER, args[0], DOMAIN, *args[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"rust_peer {args}: {line!r}"

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def finish(self, timeout=10):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        assert rc == 0, f"rust_peer exited with {rc}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except BrokenPipeError:
                pass


def node(name="py-test"):
    return conduit.Node(name=name, domain=DOMAIN)


class PubSub(unittest.TestCase):
    def test_loan_write_in_place_send_receive_zero_copy(self):
        n = node()
        svc = n.publish_subscribe("t/loan")
        pub = svc.publisher(max_slice_len=64)
        sub = svc.subscriber()
        with pub.loan(5) as loan:
            self.assertEqual(len(loan), 5)
            view = memoryview(loan)
            self.assertFalse(view.readonly)
            view[:] = b"hello"
            with self.assertRaises(BufferError):
                loan.send()  # a view is alive
            view.release()
            self.assertEqual(loan.send(), 1)
        with self.assertRaises(ValueError):
            memoryview(loan)  # sent
        sample = sub.receive(timeout=5)
        self.assertIsNotNone(sample)
        self.assertEqual(bytes(sample), b"hello")
        self.assertEqual(sample.sequence, 1)
        self.assertEqual(sample.publisher_id, pub.id)
        view = memoryview(sample)
        self.assertTrue(view.readonly)
        with self.assertRaises(TypeError):
            view[0] = 0  # read-only shared memory
        with self.assertRaises(BufferError):
            sample.release()
        view.release()
        sample.release()
        with self.assertRaises(ValueError):
            memoryview(sample)
        with self.assertRaises(ValueError):
            bytes(sample)
        self.assertIsNone(sub.receive(timeout=0))

    def test_send_copies_any_buffer(self):
        n = node()
        svc = n.publish_subscribe("t/copy")
        pub = svc.publisher(max_slice_len=16)
        sub = svc.subscriber()
        for data in (b"abc", bytearray(b"de"), memoryview(b"fgh")[1:], b""):
            pub.send(data)
            with sub.receive(timeout=5) as s:
                self.assertEqual(bytes(s), bytes(data))
        with self.assertRaises(TypeError):
            pub.send(42)
        with self.assertRaises(TypeError):
            pub.send("text is not bytes")
        with self.assertRaises(ValueError):
            pub.send(b"x" * 17)  # above max_slice_len
        with self.assertRaises(ValueError):
            pub.loan(17)

    def test_numpy_reads_the_shared_memory(self):
        try:
            import numpy
        except ImportError:
            print("SKIP numpy test: numpy is not installed", file=sys.stderr)
            return
        n = node()
        svc = n.publish_subscribe("t/numpy")
        pub = svc.publisher(max_slice_len=8 * 1000)
        sub = svc.subscriber()
        with pub.loan(8 * 1000) as loan:
            arr = numpy.frombuffer(loan, dtype=numpy.float64)
            arr[:] = numpy.arange(1000, dtype=numpy.float64)
            del arr
            loan.send()
        with sub.receive(timeout=5) as s:
            arr = numpy.frombuffer(s, dtype=numpy.float64)
            self.assertEqual(arr.sum(), sum(range(1000)))
            self.assertFalse(arr.flags.writeable)
            with self.assertRaises(BufferError):
                s.release()
            del arr

    def test_python_and_rust_processes_share_a_topic(self):
        peer = Peer(self, "echo")
        n = node()
        ping = n.publish_subscribe("py/ping")
        pong = n.publish_subscribe("py/pong")
        sub = pong.subscriber()
        pub = ping.publisher(max_slice_len=1 << 16)
        # Empty payloads (which the peer does not echo) until the Rust
        # subscriber is connected, then until the Rust publisher is.
        deadline = time.monotonic() + 10
        while pub.send(b"") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        while sub.publishers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(100):
            payload = f"message {i}".encode() * (i + 1)
            with pub.loan(len(payload)) as loan:
                memoryview(loan)[:] = payload
                loan.send()
            with sub.receive(timeout=10) as s:
                self.assertEqual(bytes(s), payload[::-1])
        pub.send(b"quit")
        peer.finish()

    def test_a_python_subscriber_killed_holding_a_sample_changes_nothing(self):
        n = node()
        svc = n.publish_subscribe("t/kill", max_borrowed=2, subscriber_buffer=4)
        pub = svc.publisher(max_slice_len=64)
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    f"""
                    import conduit, sys, time
                    n = conduit.Node(domain={DOMAIN!r})
                    sub = n.publish_subscribe("t/kill").subscriber()
                    print("ready", flush=True)
                    held = [sub.receive(timeout=10), sub.receive(timeout=10)]
                    view = memoryview(held[0])
                    print("holding", bytes(view), flush=True)
                    time.sleep(60)
                    """
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.assertEqual(child.stdout.readline().strip(), "ready")
        deadline = time.monotonic() + 10
        while pub.send(b"first") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        pub.send(b"second")
        self.assertTrue(child.stdout.readline().startswith("holding"))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        # The publisher goes on: its chunks come back to it, and a new
        # subscriber gets everything sent from now on.
        sub = svc.subscriber()
        for i in range(50):
            pub.send(b"after %d" % i)
            with sub.receive(timeout=5) as s:
                self.assertEqual(bytes(s), b"after %d" % i)

    def test_fileno_works_with_select(self):
        n = node()
        svc = n.publish_subscribe("t/select")
        pub = svc.publisher()
        sub = svc.subscriber()
        fd = sub.fileno()
        self.assertIsNone(sub.receive(timeout=0))  # arms the descriptor
        pub.send(b"wake")
        ready, _, _ = select.select([fd], [], [], 5)
        self.assertEqual(ready, [fd])
        with sub.receive(timeout=0) as s:
            self.assertEqual(bytes(s), b"wake")

    def test_open_errors_are_named(self):
        n = node()
        with self.assertRaises(conduit.NotFoundError):
            n.publish_subscribe("t/missing", create=False)
        n.publish_subscribe("t/exists")
        keep = n.publish_subscribe("t/exists")
        with self.assertRaises(conduit.AlreadyExistsError):
            n.publish_subscribe("t/exists", create=True)
        with self.assertRaises(ValueError):
            n.publish_subscribe("bad\x00name")
        with self.assertRaises(ValueError):
            n.publish_subscribe("t/x", overflow="sometimes")
        with self.assertRaises(ValueError):
            conduit.Node(domain="no/slashes\xff")
        peer = Peer(self, "typed")
        with self.assertRaises(conduit.IncompatibleError) as e:
            n.publish_subscribe("py/typed")
        self.assertIn("u64", str(e.exception))
        peer.command("quit")
        peer.finish()
        self.assertTrue(issubclass(conduit.IncompatibleError, conduit.ConduitError))
        del keep

    def test_bad_timeouts_are_value_errors(self):
        sub = node().publish_subscribe("t/timeout").subscriber()
        for t in (-1, float("nan"), float("inf")):
            with self.assertRaises(ValueError):
                sub.receive(timeout=t)
        start = time.monotonic()
        self.assertIsNone(sub.receive(timeout=0.2))
        self.assertGreaterEqual(time.monotonic() - start, 0.15)

    def test_a_port_used_from_another_thread_raises(self):
        sub = node().publish_subscribe("t/thread").subscriber()
        errors = []

        def other():
            try:
                sub.receive(timeout=0)
            except BaseException as e:  # pyo3 raises for unsendable classes
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        self.assertEqual(len(errors), 1, errors)

    def test_blocking_receive_lets_other_threads_run(self):
        n = node()
        svc = n.publish_subscribe("t/gil")
        sub = svc.subscriber()
        pub = svc.publisher()
        ticks = []

        def ticker():
            for _ in range(5):
                ticks.append(1)
                time.sleep(0.01)

        t = threading.Thread(target=ticker)
        t.start()
        self.assertIsNone(sub.receive(timeout=0.5))
        # The ticker (5 ticks, 10 ms apart) ran while receive waited: it
        # needs the GIL for each tick, so a receive that kept the GIL would
        # have let it tick once or twice.
        self.assertEqual(len(ticks), 5)
        t.join()
        del pub


class Events(unittest.TestCase):
    def test_notify_and_wait(self):
        n = node()
        ev = n.event("t/events", max_event_id=63)
        listener = ev.listener()
        notifier = ev.notifier()
        self.assertEqual(listener.wait(timeout=0), [])
        self.assertEqual(notifier.notify(3), 1)
        notifier.notify(7)
        notifier.notify(3)
        self.assertEqual(listener.wait(timeout=5), [3, 7])
        with self.assertRaises(ValueError):
            notifier.notify(64)

    def test_a_rust_notifier_wakes_a_python_listener(self):
        n = node()
        listener = n.event("py/events").listener()
        fd = listener.fileno()
        self.assertEqual(listener.wait(timeout=0), [])
        peer = Peer(self, "notify", "5")
        peer.finish()
        ready, _, _ = select.select([fd], [], [], 5)
        self.assertEqual(ready, [fd])
        self.assertEqual(listener.wait(timeout=5), [5])


class RequestResponse(unittest.TestCase):
    def test_python_client_and_server_stream(self):
        n = node()
        svc = n.request_response("t/rr")
        server = svc.server()
        client = svc.client()
        deadline = time.monotonic() + 5
        while client.servers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        pending = client.send(b"question")
        with server.receive(timeout=5) as request:
            self.assertEqual(bytes(request), b"question")
            self.assertTrue(request.wants_response)
            self.assertEqual(request.request_id, pending.request_id)
            self.assertEqual(request.client_id, client.id)
            for i in range(3):
                request.respond(b"part %d" % i)
        got = [bytes(r) for r in pending]  # until the end of the stream
        self.assertEqual(got, [b"part 0", b"part 1", b"part 2"])
        with self.assertRaises(conduit.EndOfStream):
            pending.receive(timeout=0)
        self.assertIsNone(client.send(b"fire", no_response=True))
        with server.receive(timeout=5) as request:
            self.assertFalse(request.wants_response)
            with self.assertRaises(conduit.DisconnectedError):
                request.respond(b"nobody listens")

    def test_no_server_is_a_disconnected_error(self):
        client = node().request_response("t/rr-none").client()
        with self.assertRaises(conduit.DisconnectedError):
            client.send(b"anyone?")

    def test_a_rust_server_answers_a_python_client(self):
        peer = Peer(self, "serve")
        client = node().request_response("py/upper").client()
        deadline = time.monotonic() + 5
        while client.servers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for word in (b"robot", b"plan a path", b"x" * 1000):
            pending = client.send(word)
            responses = []
            for r in pending:
                responses.append(bytes(r))
                self.assertEqual(r.server_id, client.server_ids()[0])
                r.release()
            self.assertEqual(responses, [word.upper(), str(len(word)).encode()])
        client.send(b"quit", no_response=True)
        peer.finish()

    def test_a_server_killed_mid_stream_is_a_disconnected_error(self):
        n = node()
        svc = n.request_response("t/rr-kill")
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    f"""
                    import conduit, time
                    n = conduit.Node(domain={DOMAIN!r})
                    server = n.request_response("t/rr-kill").server()
                    print("ready", flush=True)
                    request = server.receive(timeout=10)
                    request.respond(b"first")
                    print("responded", flush=True)
                    time.sleep(60)
                    """
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.assertEqual(child.stdout.readline().strip(), "ready")
        client = svc.client()
        deadline = time.monotonic() + 5
        while client.servers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        pending = client.send(b"work")
        self.assertEqual(child.stdout.readline().strip(), "responded")
        with pending.receive(timeout=5) as r:
            self.assertEqual(bytes(r), b"first")
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        with self.assertRaises(conduit.DisconnectedError):
            pending.receive(timeout=10)


class Blackboards(unittest.TestCase):
    def test_read_a_rust_blackboard_and_wait_for_changes(self):
        peer = Peer(self, "board")
        board = node().blackboard("py/board")
        self.assertEqual(board.key_type, ("u32", 4))
        self.assertEqual(board.value_type, ("u64", 8))
        self.assertTrue(board.notify_changes)
        self.assertEqual(len(board), 2)
        self.assertEqual(board.keys(), [(1).to_bytes(4, "little"), (2).to_bytes(4, "little")])
        reader = board.reader()
        value, version = reader.get(1)
        self.assertEqual(int.from_bytes(value, "little"), 10)
        self.assertEqual(version, 0)
        self.assertEqual(reader.get((2).to_bytes(4, "little"))[0], (20).to_bytes(8, "little"))
        with self.assertRaises(KeyError):
            reader.get(3)
        with self.assertRaises(ValueError):
            reader.get(-1)  # not a u32
        with self.assertRaises(ValueError):
            reader.get(b"\x01\x00")  # not 4 bytes
        self.assertIsNone(reader.wait_changed_since(1, version, timeout=0.05))
        reply = peer.command("set 1 42")
        self.assertTrue(reply.startswith("version "), reply)
        new = reader.wait_changed_since(1, version, timeout=5)
        self.assertIsNotNone(new)
        self.assertTrue(reader.changed_since(1, version))
        value, now = reader.get(1)
        self.assertEqual((int.from_bytes(value, "little"), now), (42, new))
        # One writer at a time: the Rust one holds the slot.
        with self.assertRaises(conduit.ResourceError):
            board.writer()
        self.assertEqual(peer.command("release"), "released")
        writer = board.writer()
        v = writer.update(2, (7).to_bytes(8, "little"))
        self.assertEqual(reader.get(2), ((7).to_bytes(8, "little"), v))
        with self.assertRaises(ValueError):
            writer.update(2, b"short")
        del writer
        peer.command("quit")
        peer.finish()

    def test_a_missing_blackboard_is_not_found(self):
        with self.assertRaises(conduit.NotFoundError):
            node().blackboard("t/no-board")


class Asyncio(unittest.TestCase):
    def test_receive_async_waits_without_blocking_the_loop(self):
        import asyncio

        n = node()
        svc = n.publish_subscribe("t/async")
        pub = svc.publisher()
        sub = svc.subscriber()

        async def main():
            ticks = []

            async def ticker():
                for _ in range(3):
                    ticks.append(1)
                    await asyncio.sleep(0.01)

            t = asyncio.ensure_future(ticker())
            self.assertIsNone(await sub.receive_async(timeout=0.3))
            # The loop ran the ticker (3 ticks, 10 ms apart) while
            # receive_async waited; a blocking wait would have let it tick
            # once at most.
            self.assertEqual(len(ticks), 3)
            await t
            asyncio.get_running_loop().call_later(0.05, pub.send, b"later")
            sample = await sub.receive_async(timeout=5)
            self.assertEqual(bytes(sample), b"later")
            sample.release()

        asyncio.run(main())

    def test_wait_async_and_async_responses_from_rust(self):
        import asyncio

        n = node()
        listener = n.event("py/events").listener()
        peer = Peer(self, "serve")
        client = n.request_response("py/upper").client()

        async def main():
            notified = asyncio.ensure_future(listener.wait_async(timeout=10))
            await asyncio.sleep(0.01)
            Peer(self, "notify", "9").finish()
            self.assertEqual(await notified, [9])
            self.assertEqual(await listener.wait_async(timeout=0.05), [])
            deadline = time.monotonic() + 5
            while client.servers == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            got = [bytes(r) async for r in client.send(b"async")]
            self.assertEqual(got, [b"ASYNC", b"5"])

        asyncio.run(main())
        client.send(b"quit", no_response=True)
        peer.finish()


class ThreeLanguages(unittest.TestCase):
    def test_c_python_and_rust_programs_share_one_service(self):
        """A Python publisher; a C subscriber (conduit-ffi's example) and a
        Rust subscriber (rust_peer) in their own processes get every
        sample, zero-copy, on the one `[u8]` service."""
        c_path = os.environ.get("CONDUIT_C_SUBSCRIBER")
        if not c_path:
            if os.environ.get("CONDUIT_REQUIRE_PYTHON"):
                self.fail("no C subscriber was built (CONDUIT_C_SUBSCRIBER unset)")
            print("SKIP three-language test: no C compiler", file=sys.stderr)
            return
        n = node()
        svc = n.publish_subscribe("tri/topic", subscriber_buffer=8)
        pub = svc.publisher()
        c = subprocess.Popen([c_path, DOMAIN, "tri/topic", "3"], stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (c.poll() is None and c.kill(), c.wait(), c.stdout.close()))
        self.assertEqual(c.stdout.readline().strip(), "ready")
        rust = Peer(self, "subscribe", "tri/topic", "3")
        sent = [b"from python %d" % i for i in range(1, 4)]
        for i, text in enumerate(sent, 1):
            self.assertEqual(pub.send(text), 2)  # the C and the Rust subscriber
        expected = [f"received {i} from python {i}" for i in range(1, 4)]
        self.assertEqual([c.stdout.readline().strip() for _ in range(3)], expected)
        self.assertEqual([rust.proc.stdout.readline().strip() for _ in range(3)], expected)
        self.assertEqual(c.wait(timeout=10), 0)
        rust.finish()


class Discovery(unittest.TestCase):
    def test_watch_services_of_a_rust_process(self):
        n = node()
        watch = n.watch_services()
        first = watch.events(timeout=0)  # what exists now (other tests' leftovers: none)
        self.assertEqual([e for e in first if e[2].startswith("py/board")], [])
        peer = Peer(self, "board")
        deadline = time.monotonic() + 10
        seen = []
        while ("appeared", "blackboard", "py/board") not in seen and time.monotonic() < deadline:
            seen += watch.events(timeout=1)
        self.assertIn(("appeared", "blackboard", "py/board"), seen)
        self.assertIn(("blackboard", "py/board"), watch.services())
        peer.command("quit")
        peer.finish()
        seen = []
        while ("disappeared", "blackboard", "py/board") not in seen and time.monotonic() < deadline:
            seen += watch.events(timeout=1)
        self.assertIn(("disappeared", "blackboard", "py/board"), seen)
        self.assertIsInstance(watch.fileno(), int)


class Pose(ctypes.Structure):
    """The Python side of rust_peer's `#[repr(C)] struct Pose`."""

    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double), ("seq", ctypes.c_uint64)]


def pose_peer(test):
    """A rust_peer `pose` process and the fingerprint of its Pose."""
    peer = Peer(test, "pose")
    word, fingerprint = peer.proc.stdout.readline().split()
    assert word == "fingerprint", word
    return peer, int(fingerprint, 16)


class TypedPubSub(unittest.TestCase):
    def test_a_ctypes_struct_meets_a_rust_type_both_ways(self):
        peer, fingerprint = pose_peer(self)
        n = node()
        to_rust = n.publish_subscribe("py/pose", Pose, fingerprint=fingerprint, create=False)
        back = n.publish_subscribe("py/pose-back", Pose, fingerprint=fingerprint, create=False)
        self.assertEqual(to_rust.layout, ("Pose", 24, 8, fingerprint))
        self.assertIs(to_rust.payload_type, Pose)
        pub = to_rust.publisher()
        sub = back.subscriber()
        self.assertEqual(pub.max_slice_len, ctypes.sizeof(Pose))
        for i in range(1, 6):
            if i % 2:
                # A copy of a ctypes instance.
                self.assertEqual(pub.send(Pose(x=i, y=-i, seq=i)), 1)
            else:
                # Written in place: the struct over the shared memory.
                with pub.loan() as loan:
                    self.assertEqual(len(loan), 24)
                    p = Pose.from_buffer(loan)
                    p.x, p.y, p.seq = i, -i, i
                    del p  # the view must be gone before the send
                    loan.send()
            with sub.receive(timeout=10) as sample:
                self.assertIsNotNone(sample)
                value = sample.value
            # The value is a copy: it outlives the sample.
            self.assertIsInstance(value, Pose)
            self.assertEqual((value.x, value.y, value.seq), (2 * i, -2 * i, i + 1000))
        pub.send(Pose(seq=0))
        peer.finish()

    def test_a_numpy_dtype_meets_the_same_rust_type(self):
        try:
            import numpy
        except ImportError:
            print("SKIP numpy dtype test: numpy is not installed", file=sys.stderr)
            return
        peer, fingerprint = pose_peer(self)
        dtype = numpy.dtype([("x", "<f8"), ("y", "<f8"), ("seq", "<u8")], align=True)
        n = node()
        to_rust = n.publish_subscribe("py/pose", dtype, type_name="Pose", fingerprint=fingerprint)
        back = n.publish_subscribe("py/pose-back", dtype, type_name="Pose", fingerprint=fingerprint)
        pub = to_rust.publisher()
        sub = back.subscriber()
        with pub.loan() as loan:
            record = numpy.frombuffer(loan, dtype)  # writable, in place
            record[0] = (1.5, -1.5, 7)
            del record
            loan.send()
        with sub.receive(timeout=10) as sample:
            view = numpy.frombuffer(sample, dtype)  # zero-copy, read-only
            self.assertFalse(view.flags.writeable)
            self.assertEqual((view[0]["x"], view[0]["seq"]), (3.0, 1007))
            del view
            value = sample.value
        self.assertEqual((value["y"], value["seq"]), (-3.0, 1007))
        with self.assertRaises(ValueError):
            n.publish_subscribe("py/pose", dtype, fingerprint=fingerprint)  # no type_name
        pub.send(numpy.zeros(1, dtype))
        peer.finish()

    def test_type_mismatches_raise_incompatible_error(self):
        peer, fingerprint = pose_peer(self)
        n = node()

        class PoseV2(ctypes.Structure):
            _fields_ = Pose._fields_

        class PoseWithExtra(ctypes.Structure):
            _fields_ = Pose._fields_ + [("extra", ctypes.c_uint64)]

        class PoseOf32BitWords(ctypes.Structure):
            _fields_ = [("w%d" % i, ctypes.c_uint32) for i in range(6)]

        cases = {
            "name": (PoseV2, {"fingerprint": fingerprint}),
            "size": (PoseWithExtra, {"type_name": "Pose", "fingerprint": fingerprint}),
            "align": (PoseOf32BitWords, {"type_name": "Pose", "fingerprint": fingerprint}),
            "fingerprint": (Pose, {}),  # the leaf default is not Rust's
        }
        for what, (t, kwargs) in cases.items():
            with self.subTest(what):
                with self.assertRaises(conduit.IncompatibleError) as e:
                    n.publish_subscribe("py/pose", t, create=False, **kwargs)
                # Both sides are named.
                self.assertIn("Pose (size 24, align 8, fingerprint %016x)" % fingerprint, str(e.exception))
                self.assertIn("this opener asked for payload", str(e.exception))
        # A byte opener of a typed service, and a typed opener of a byte one.
        with self.assertRaises(conduit.IncompatibleError):
            n.publish_subscribe("py/pose", create=False)
        keep = n.publish_subscribe("t/bytes-not-pose")
        with self.assertRaises(conduit.IncompatibleError):
            n.publish_subscribe("t/bytes-not-pose", Pose, fingerprint=fingerprint)
        # The right description opens it; a pose with seq 0 ends the peer.
        stop = n.publish_subscribe("py/pose", Pose, fingerprint=fingerprint).publisher()
        stop.send(Pose(seq=0))
        peer.finish()
        del keep

    def test_typed_loans_values_and_bad_arguments(self):
        n = node()
        svc = n.publish_subscribe("t/typed-local", Pose)
        self.assertEqual(svc.layout[:3], ("Pose", 24, 8))
        pub = svc.publisher()
        sub = svc.subscriber()
        with self.assertRaises(ValueError):
            pub.loan(16)  # not one Pose
        with self.assertRaises(ValueError):
            pub.send(b"short")
        pub.send(bytes(Pose(x=1, y=2, seq=3)))
        with sub.receive(timeout=5) as sample:
            self.assertEqual(len(sample), 24)
            with self.assertRaises(TypeError):
                Pose.from_buffer(sample)  # read-only: from_buffer_copy (sample.value)
            self.assertEqual(sample.value.seq, 3)
        with self.assertRaises(ValueError):
            sample.value  # released
        raw = n.publish_subscribe("t/bytes-local")
        rp = raw.publisher()
        rs = raw.subscriber()
        with self.assertRaises(ValueError):
            rp.loan()  # a byte loan needs its size
        rp.send(b"abc")
        with rs.receive(timeout=5) as sample:
            with self.assertRaises(TypeError):
                sample.value
        self.assertIsNone(raw.payload_type)
        for bad in (42, "Pose", Pose(), int):
            with self.assertRaises(TypeError):
                n.publish_subscribe("t/bad-type", bad)
        with self.assertRaises(ValueError):
            n.publish_subscribe("t/bad-type", ctypes.c_uint8 * 3, type_name="x" * 200)


class Stubs(unittest.TestCase):
    def test_stubs_match_the_module(self):
        """_conduit.pyi names every class, method and property of the
        module, and nothing else (`__buffer__` is the buffer protocol,
        which Python 3.11 does not show as an attribute)."""
        import ast
        import conduit._conduit as module

        path = os.path.join(os.path.dirname(conduit.__file__), "_conduit.pyi")
        with open(path) as f:
            tree = ast.parse(f.read())
        stub_classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}
        runtime_classes = {n for n in dir(module) if isinstance(getattr(module, n), type)}
        self.assertEqual(set(stub_classes), runtime_classes)
        for name, c in stub_classes.items():
            cls = getattr(module, name)
            stub = {f.name for f in c.body if isinstance(f, ast.FunctionDef)}
            if issubclass(cls, BaseException):
                continue
            public = {n for n in vars(cls) if not n.startswith("_")}
            self.assertEqual({n for n in stub if not n.startswith("_")}, public, name)
            for dunder in stub - public - {"__init__", "__buffer__"}:
                self.assertTrue(hasattr(cls, dunder), f"{name}.{dunder}")
        self.assertTrue(os.path.exists(os.path.join(os.path.dirname(path), "py.typed")))


class Examples(unittest.TestCase):
    """The examples in examples/ run and print what their docs say."""

    def run_example(self, name):
        path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", name)
        out = subprocess.run(
            [sys.executable, path],
            env={**os.environ, "CONDUIT_DOMAIN": DOMAIN},
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_publish_subscribe_example(self):
        out = self.run_example("publish_subscribe.py")
        for i in range(1, 6):
            self.assertIn(f"subscriber: frame {i}: 65536 bytes, first byte {i}, sum {1024 * i}", out)

    def test_request_response_example(self):
        out = self.run_example("request_response.py")
        self.assertIn("cancel order 17 -> CANCEL ORDER 17", out)
        self.assertIn("take a snapshot -> TAKE A SNAPSHOT", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
