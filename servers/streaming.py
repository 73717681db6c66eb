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

Hand-written because no library offers it: Starlette's `BackgroundTask` runs only after a
complete send, and `StreamingResponse` has no close hook.
"""

import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

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

    def __init__(self, content: Content, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await close_content(self._content)


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
    """The streaming response of a `stream_close` setting: `generator` or `response`."""
    return ClosingStreamingResponse if stream_close == "response" else StreamingResponse
