"""Streaming responses that close their body however the response ends, shared by every app.

Starlette's `StreamingResponse` iterates its body and never closes it. uvicorn's httptools
protocol speaks ASGI 2.3, so Starlette runs the send loop beside a task that waits for
`http.disconnect`; when the client leaves first, that task cancels the send loop and the response
returns *normally*, with the body generator suspended at its `yield`. A client that stops reading
at `data: [DONE]` and hangs up (as Locust's user does, and any client that stops early) leaves
the sync `relay` waiting for a thread token to read the end of the upstream body
(tests/test_streaming.py drives that path: the response returns without an error and the
relay's `finally` has not run). Until then the upstream connection stays checked out,
and the finalizer runs `Response.close()` in whatever thread triggers the collection: if that
thread is inside httpcore's connection pool, holding its non-reentrant lock, it waits for itself
forever (encode/httpcore#990, #996; PRs #1003, #1108 are not in httpcore 1.0.9). An async relay
is finalized by asyncio's async-generator hook on the loop instead, and httpcore's async pool
takes no thread lock. The lab keeps the failure reproducible (`stream_close = "generator"`, the
default, what users write) and measures the fix (`"response"`).

The closing response also ends the upstream read at once when the client leaves: a worker
thread blocked in a socket read cannot be cancelled, so it shuts the upstream socket down
(`network_stream` response extension, documented by httpx and httpcore), the read returns, the
relay ends with an error event nobody reads, and the connection is discarded. Without it the
relay waits for the next upstream token (or the first, while the model thinks).

Hand-written because no library offers it: Starlette's `BackgroundTask` runs only after a
complete send, and `StreamingResponse` has no close hook.
"""

import contextlib
import inspect
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

Content = Iterator[bytes] | AsyncIterator[bytes]
# How long a close waits for a generator a worker thread is still running (one upstream read).
CLOSE_WAIT_S = 30.0
StreamFactory = Callable[..., StreamingResponse]


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body generator when the response ends, completed, failed or abandoned.

    A sync generator is closed in a worker thread of its own limiter, not the shared tokens: its
    `finally` may block (returning a connection takes the pool's lock), and a stall of the
    shared tokens must not keep a stream from releasing what it holds (FastAPI closes `yield`
    dependencies the same way, in `fastapi.concurrency.contextmanager_in_threadpool`).
    """

    def __init__(self, content: Content, *, upstream: Any = None, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._content = content
        self._upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_and_abort() -> Message:
            # Starlette's send loop waits for the worker's read (a thread cannot be cancelled)
            # before it returns: the read is ended here, as the client's leaving is heard, or
            # before it starts, when the worker has not reached it yet.
            message = await receive()
            if message["type"] == "http.disconnect" and sync_body_open(self._content):
                abort_read(self._upstream)
            return message

        try:
            await super().__call__(scope, receive_and_abort, send)
        finally:
            with anyio.CancelScope(shield=True):
                await close_content(self._content)
                await close_upstream(self._content, self._upstream)


def plain_streaming_response(
    content: Content, *, upstream: Any = None, **kwargs: Any
) -> StreamingResponse:
    """Starlette's own response (`stream_close = "generator"`); `upstream` is not used."""
    del upstream
    return StreamingResponse(content, **kwargs)


def sync_body_open(content: Content) -> bool:
    """A sync body generator not finished yet: a worker thread runs it, or will."""
    return inspect.isgenerator(content) and (
        inspect.getgeneratorstate(content) != inspect.GEN_CLOSED
    )


async def close_upstream(content: Content, upstream: Any) -> None:
    """Close the upstream response of a sync body, whatever the body did: a generator closed
    before it ever ran (the client left before the first read) never ran its `finally`."""
    if upstream is None or getattr(upstream, "is_closed", True) or not inspect.isgenerator(content):
        return
    await anyio.to_thread.run_sync(upstream.close, limiter=anyio.CapacityLimiter(1))


def abort_read(upstream: Any) -> None:
    """Shut down the socket of an upstream response so a read blocked on it returns now.

    Not once the response is closed: httpx closes it (and returns a kept-alive connection to
    its pool) inside the worker's last `next()`, so a client that leaves right after the last
    event would otherwise shut a pooled socket. What remains is the few bytecodes between this
    check and the shutdown; a pooled connection whose socket was shut is found closed and
    dropped by the pool before reuse, and only one checked out in that instant would fail.
    """
    if getattr(upstream, "is_closed", True):
        return
    extensions = getattr(upstream, "extensions", None) or {}
    stream = extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)


async def close_content(content: Content) -> None:
    """Close a body generator now; one that already ended is left alone (no thread hop)."""
    aclose = getattr(content, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    if inspect.isgenerator(content) and inspect.getgeneratorstate(content) == inspect.GEN_CLOSED:
        return
    close = getattr(content, "close", None)
    if close is not None:
        await anyio.to_thread.run_sync(_close_soon, close, limiter=anyio.CapacityLimiter(1))


def _close_soon(close: Callable[[], None]) -> None:
    # "generator already executing": a worker still runs the generator's next() (the send loop
    # was cancelled while it waited for it); close once that returns, within CLOSE_WAIT_S.
    deadline = time.monotonic() + CLOSE_WAIT_S
    while True:
        try:
            close()
            return
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def response_class(stream_close: str) -> StreamFactory:
    """The streaming response of a `stream_close` setting: `generator` or `response`.

    Both take the upstream response as `upstream=`; only the closing one uses it.
    """
    return ClosingStreamingResponse if stream_close == "response" else plain_streaming_response
