"""Request/response between two Python processes, with streamed responses.

    python3 request_response.py             # starts a server child, sends 3 requests

The server answers each request with one response per word (upper case)
and ends the stream by leaving the request's `with` block; the client
iterates the responses until the end of the stream. A Rust client or server
of `request_response::<[u8], [u8]>()` on "example/shout" meets these.
The domain comes from $CONDUIT_DOMAIN (default "default").
"""

import subprocess
import sys
import time

import conduit


def server():
    node = conduit.Node(name="shout-server")
    srv = node.request_response("example/shout").server()
    print("ready", flush=True)
    while True:
        with srv.receive() as request:  # blocks (Ctrl-C works)
            text = bytes(request)
            if text == b"quit":
                return
            for word in text.split():
                request.respond(word.upper())
        # leaving the block ends the response stream


def client():
    node = conduit.Node(name="shout-client")
    cli = node.request_response("example/shout").client()
    child = subprocess.Popen([sys.executable, __file__, "server"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 10
    while cli.servers == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    for text in (b"plan a path", b"cancel order 17", b"take a snapshot"):
        responses = [bytes(r) for r in cli.send(text)]  # until the stream ends
        print(text.decode(), "->", b" ".join(responses).decode())
    cli.send(b"quit", no_response=True)
    sys.exit(child.wait())


if __name__ == "__main__":
    server() if sys.argv[1:] == ["server"] else client()
