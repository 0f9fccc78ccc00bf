"""conduit: fast, crash-safe inter-process communication on Linux.

The Python binding of the Rust library conduit. A Python process joins the
same services as Rust (and C) processes: publish/subscribe, request/response
and events of byte payloads, and blackboards, all in shared memory.

    import conduit
    node = conduit.Node(name="camera", domain="robot")
    frames = node.publish_subscribe("camera/frames")
    pub = frames.publisher(max_slice_len=1 << 20)
    with pub.loan(4) as loan:            # a chunk of shared memory
        memoryview(loan)[:] = b"abcd"    # written in place
        loan.send()
    sub = frames.subscriber()
    with sub.receive(timeout=1.0) as sample:
        data = memoryview(sample)        # no copy

Typed services: `node.publish_subscribe("robot/pose", Pose,
fingerprint=...)` with a `ctypes.Structure` (or a numpy dtype and
`type_name=`) meets a Rust `publish_subscribe::<Pose>()` service; a
mismatch raises `IncompatibleError`, `sample.value` is a copy as the type.

Received samples, requests and responses expose the shared memory through
the buffer protocol (memoryview, numpy.frombuffer), read-only, until they
are released; a loan exposes its chunk writable until it is sent.
"""

from ._conduit import (
    ActiveRequest,
    AlreadyExistsError,
    Blackboard,
    Client,
    ConduitError,
    CorruptedError,
    DisconnectedError,
    EndOfStream,
    EventService,
    IncompatibleError,
    Listener,
    Loan,
    Node,
    NotFoundError,
    Notifier,
    PendingResponse,
    PubSubService,
    Publisher,
    Reader,
    ReqResService,
    ResourceError,
    Response,
    Sample,
    Server,
    ServiceWatch,
    Subscriber,
    Writer,
)

__all__ = [
    "ActiveRequest",
    "AlreadyExistsError",
    "Blackboard",
    "Client",
    "ConduitError",
    "CorruptedError",
    "DisconnectedError",
    "EndOfStream",
    "EventService",
    "IncompatibleError",
    "Listener",
    "Loan",
    "Node",
    "NotFoundError",
    "Notifier",
    "PendingResponse",
    "PubSubService",
    "Publisher",
    "Reader",
    "ReqResService",
    "ResourceError",
    "Response",
    "Sample",
    "Server",
    "ServiceWatch",
    "Subscriber",
    "Writer",
]
