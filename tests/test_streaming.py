"""`servers/streaming.py`: Starlette leaves a body generator open when the client leaves; the
closing response does not, whatever state the generator is in."""

import socket
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from starlette.responses import StreamingResponse

from servers import streaming


class Body:
    """A sync body like the `def` relay: yields chunks, records whether its `finally` ran."""

    def __init__(self, chunks: int = 50, delay_s: float = 0.01) -> None:
        self.closed = False
        self.chunks, self.delay_s = chunks, delay_s

    def __iter__(self) -> Iterator[bytes]:
        try:
            for _ in range(self.chunks):
                time.sleep(self.delay_s)
                yield b"data: x\n\n"
        finally:
            self.closed = True


def serve_until_disconnect(response_class: type[StreamingResponse], body: Body) -> int:
    """Run the response as uvicorn's httptools protocol does (ASGI 2.3): the client leaves
    after the first chunk. Returns the chunks sent."""
    sent: list[dict] = []
    left = anyio.Event()

    async def receive() -> dict:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            left.set()

    async def main() -> None:
        scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
        await response_class(iter(body), media_type="text/event-stream")(scope, receive, send)

    anyio.run(main)
    return sum(1 for m in sent if m["type"] == "http.response.body")


def test_starlette_returns_normally_and_leaves_the_relay_open() -> None:
    body = Body()
    chunks = serve_until_disconnect(StreamingResponse, body)
    assert chunks < body.chunks  # the client left mid-stream, and no error came out
    assert not body.closed  # the relay's `finally` (httpx: response.close()) has not run


def test_the_closing_response_closes_the_relay_when_the_client_leaves() -> None:
    body = Body()
    chunks = serve_until_disconnect(streaming.ClosingStreamingResponse, body)
    assert chunks < body.chunks
    assert body.closed


def test_close_content_waits_for_a_generator_a_worker_still_runs() -> None:
    release = threading.Event()

    def slow() -> Iterator[bytes]:
        yield b"1"
        release.wait(5)
        yield b"2"

    gen = slow()
    next(gen)
    worker = threading.Thread(target=next, args=(gen,))
    worker.start()  # now "already executing" until release is set
    time.sleep(0.05)
    threading.Timer(0.1, release.set).start()

    async def close() -> None:
        await streaming.close_content(gen)

    anyio.run(close)
    worker.join(1)
    with pytest.raises(StopIteration):
        next(gen)


def test_a_finished_generator_costs_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def done() -> Iterator[bytes]:
        yield b"x"

    gen = done()
    list(gen)

    async def no_thread(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a thread hop for a closed generator")

    monkeypatch.setattr(streaming.anyio.to_thread, "run_sync", no_thread)
    anyio.run(streaming.close_content, gen)


def test_response_class_follows_the_setting() -> None:
    assert streaming.response_class("response") is streaming.ClosingStreamingResponse
    assert streaming.response_class("generator") is streaming.plain_streaming_response


class SocketBody:
    """A sync relay blocked reading a socket, as the `def` relay waits for an upstream token."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False
        self.read_returned_after_s: float | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield b"data: first\n\n"
            start = time.monotonic()
            self.sock.recv(1)  # nothing ever comes: the upstream's next token is far away
            self.read_returned_after_s = time.monotonic() - start
            yield b"data: error\n\n"
        finally:
            self.closed = True


class Upstream:
    """What the closing response needs of an httpx response: its `network_stream`."""

    def __init__(self, sock: socket.socket, is_closed: bool = False) -> None:
        stream = type("Stream", (), {"get_extra_info": lambda _self, key: sock})()
        self.extensions = {"network_stream": stream}
        self.is_closed = is_closed

    def close(self) -> None:
        self.is_closed = True


@pytest.mark.timeout(10)
def test_the_closing_response_ends_a_blocked_upstream_read_when_the_client_leaves() -> None:
    ours, theirs = socket.socketpair()
    body = SocketBody(ours)
    sent: list[dict] = []

    async def receive() -> dict:
        await anyio.sleep(0.2)  # the client leaves while the relay waits for the next token
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async def main() -> None:
        scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
        response = streaming.ClosingStreamingResponse(iter(body), upstream=Upstream(ours))
        await response(scope, receive, send)

    try:
        anyio.run(main)
        assert body.closed
        assert body.read_returned_after_s is not None and body.read_returned_after_s < 1
    finally:
        ours.close()
        theirs.close()


def test_the_plain_response_takes_and_ignores_the_upstream() -> None:
    response = streaming.plain_streaming_response(iter([b"x"]), upstream=object())
    assert type(response) is StreamingResponse


def test_a_closed_upstream_response_is_not_shut() -> None:
    """httpx closes the response (its connection back in the pool) in the relay's last read:
    a client leaving then must not shut that pooled socket."""
    ours, theirs = socket.socketpair()
    try:
        streaming.abort_read(Upstream(ours, is_closed=True))
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"  # still open both ways
        streaming.abort_read(Upstream(ours))
        assert ours.recv(1) == b""  # shut: a blocked read returns
    finally:
        ours.close()
        theirs.close()


@pytest.mark.timeout(10)
def test_a_client_leaving_before_the_first_read_still_closes_the_upstream() -> None:
    """The client hangs up as the headers go out: the worker may not have started the relay yet
    (then closing the generator never runs its `finally`); the upstream is closed anyway, and a
    read that does start returns at once."""
    for _ in range(20):  # the worker reaches its read before the disconnect, or not
        ours, theirs = socket.socketpair()
        body, upstream = SocketBody(ours), Upstream(ours)

        async def receive() -> dict:
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            pass

        async def main(body: SocketBody, upstream: Upstream) -> None:
            scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
            response = streaming.ClosingStreamingResponse(iter(body), upstream=upstream)
            await response(scope, receive, send)

        try:
            anyio.run(main, body, upstream)
            assert upstream.is_closed
            assert body.read_returned_after_s is None or body.read_returned_after_s < 1
        finally:
            ours.close()
            theirs.close()
