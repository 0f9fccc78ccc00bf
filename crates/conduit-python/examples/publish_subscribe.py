"""Publish/subscribe between two Python processes, zero-copy.

    python3 publish_subscribe.py            # starts a subscriber child, publishes 5 frames

The publisher writes each frame straight into shared memory (a loan); the
subscriber, a second process, reads it in place through a memoryview (or
numpy, when installed) and prints a checksum. A Rust program subscribing to
"example/frames" with `publish_subscribe::<[u8]>()` gets the same frames.
The domain comes from $CONDUIT_DOMAIN (default "default").
"""

import subprocess
import sys
import time

import conduit

FRAME = 64 * 1024


def subscriber():
    node = conduit.Node(name="frame-subscriber")
    sub = node.publish_subscribe("example/frames", subscriber_buffer=8).subscriber()
    print("ready", flush=True)
    for _ in range(5):
        with sub.receive(timeout=10) as frame:
            view = memoryview(frame)  # the publisher's memory, read-only
            print(f"frame {frame.sequence}: {len(view)} bytes, first byte {view[0]}, "
                  f"sum {sum(view[:1024])}", flush=True)
            view.release()


def publisher():
    node = conduit.Node(name="frame-publisher")
    frames = node.publish_subscribe("example/frames", subscriber_buffer=8)
    pub = frames.publisher(max_slice_len=FRAME)
    child = subprocess.Popen([sys.executable, __file__, "subscriber"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"  # its subscriber exists
    for i in range(5):
        with pub.loan(FRAME) as loan:
            view = memoryview(loan)
            view[:] = bytes([i + 1]) * FRAME  # written in place: no copy afterwards
            view.release()
            reached = loan.send()
        print(f"sent frame {i + 1} to {reached} subscriber(s)")
    for line in child.stdout:
        print("subscriber:", line.rstrip())
    sys.exit(child.wait())


if __name__ == "__main__":
    subscriber() if sys.argv[1:] == ["subscriber"] else publisher()
