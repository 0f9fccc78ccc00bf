"""asyncio support: the coroutines behind `receive_async`, `wait_async` and
`async for` of the ports (the Rust methods return these coroutines).

Each waits on the port's `fileno()` with `loop.add_reader` and calls the
non-blocking form (`receive(timeout=0)`, `wait(timeout=0)`) when it
reports; a non-blocking call that finds nothing re-arms the descriptor, so
no wake-up is lost between the check and the wait.
"""

import asyncio


async def _readable(fd):
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake():
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _until(port, attempt, empty):
    fd = port.fileno()
    while True:
        got = attempt()
        if got != empty:
            return got
        await _readable(fd)


async def receive(port, timeout):
    """`await port.receive_async(timeout)`: the next sample, request or
    response; None if `timeout` seconds pass first."""
    coro = _until(port, lambda: port.receive(timeout=0), None)
    if timeout is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        return None


async def wait(listener, timeout):
    """`await listener.wait_async(timeout)`: the event ids notified; [] if
    `timeout` seconds pass first."""
    coro = _until(listener, lambda: listener.wait(timeout=0), [])
    if timeout is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        return []


async def next_response(pending):
    """`async for response in pending`: the next response, until the end of
    the stream."""
    from . import EndOfStream

    try:
        return await receive(pending, None)
    except EndOfStream:
        raise StopAsyncIteration from None
