"""Cancel a request's work when its client leaves (`LAB_CANCEL_ON_DISCONNECT`), as far as each
handler style allows. A fix arm: off by default, the handlers the same either way.

Nothing in Starlette or FastAPI cancels a non-streamed request whose client has gone: uvicorn
would answer `receive()` with `http.disconnect`, but nobody awaits it while the handler runs, so
the handler, its upstream call and its queries run to their end for nobody (only a streamed
response listens, because Starlette's `StreamingResponse` does under ASGI spec 2.3). This
middleware listens: while the app runs it waits on `receive()` and, when `http.disconnect`
comes before the response has ended, tells the request's worker threads (`Departure`) and
cancels the app with an anyio cancel scope.

What each style gets from it (tests/test_disconnects.py measures each):

- `async def` (`async`): the handler is cancelled at the await it is in. httpx (and aiohttp)
  close the upstream connection they were waiting on at once; a request waiting for a pooled
  upstream or DB connection never gets one. But a query already handed to aiosqlite runs to its
  end in that connection's thread while SQLAlchemy throws the connection away, so its pool slot
  is free at once: under abandonment more queries run at once than the pool has connections
  (measured: 30 from a pool of 15; py-spy saw 77 threads inside the query's wait, 14 without
  the arm). On the database side the arm is no fix for `async` on SQLite (not measured on
  PostgreSQL, whose drivers can cancel a query on the server).
- `def` (`sync`): a thread cannot be cancelled. A request still waiting for a threadpool token
  is cancelled there and never starts: no upstream call, no query. A handler already in its
  thread runs to its end and its result is discarded (anyio waits for the thread, then the
  cancellation lands), but its upstream read is ended at once: the sync HTTP client's network
  backend is wrapped (`install`) so that every read and write a worker thread makes on an
  upstream socket registers that socket with its request's `Departure` (a context variable,
  which anyio copies into the thread), and the departure shuts those sockets down, the
  `servers/streaming.py` idea, here for any upstream call, before its response headers too. The
  read returns, httpx raises, the handler ends. A query already running in the database runs to
  its end (SQLite's `interrupt()` or psycopg's `cancel()` could end it; not done here).
- `blocking`: nothing. The handler blocks the event loop, and the task that would hear the
  client can only run once the handler is done, response built; the wrapped backend is there
  but the departure comes too late to matter.

Pitfalls known from Starlette's and FastAPI's trackers, and how they are kept out:

- Listening must not take the request body from the app: `Request.is_disconnected()` can
  consume an `http.request` message (Kludex/starlette discussion #2215, PR #3396). The watcher
  starts reading `receive()` only once the app has read the body to its end (a request with no
  body: at once, and the empty message it reads is kept for the app); every later `receive()`
  of the app is answered from what the watcher read.
- An `http.disconnect` after the response ended is no departure: uvicorn answers every
  `receive()` after the end with one (uvicorn PR #147; taking it for one cancelled background
  tasks, Kludex/starlette#1438). The response's end is noted before it is sent.
- A pure ASGI middleware, not `BaseHTTPMiddleware`, which keeps the disconnect from the app it
  wraps (fastapi/fastapi#3766 and its many duplicates).
- An exception of the app leaves as itself, not wrapped in the task group's exception group.
"""

import contextlib
import inspect
import math
import socket
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The departure of the request the current task (or worker thread) works for.
_departure: ContextVar["Departure | None"] = ContextVar("lab_departure", default=None)


class Departure:
    """One request's client leaving, as the worker threads working for it can see it."""

    def __init__(self) -> None:
        self.left = False
        self._lock = threading.Lock()
        self._in_use: list[socket.socket] = []

    @contextlib.contextmanager
    def using(self, sock: socket.socket) -> Iterator[None]:
        """Around one read or write on an upstream socket: a departure meanwhile shuts it down
        (one already there, before the call); once the call returns the socket is let go, so a
        connection back in its pool is never touched."""
        with self._lock:
            if self.left:
                shut(sock)
            self._in_use.append(sock)
        try:
            yield
        finally:
            with self._lock:
                self._in_use.remove(sock)

    def leave(self) -> int:
        """The client has gone: shut down every socket in use for it; how many were."""
        with self._lock:
            self.left = True
            for sock in self._in_use:
                shut(sock)
            return len(self._in_use)


def shut(sock: socket.socket) -> None:
    """Shut a socket down so a read or write blocked on it returns now."""
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)


class DepartingStream:
    """A sync network stream (httpcore's or httpcore2's) whose reads and writes register their
    socket with the departure of the request they run for."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _using(self) -> contextlib.AbstractContextManager[None]:
        departure = _departure.get()
        sock = self._stream.get_extra_info("socket")
        if departure is None or not isinstance(sock, socket.socket):
            return contextlib.nullcontext()
        return departure.using(sock)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with self._using():
            return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with self._using():
            self._stream.write(buffer, timeout)

    def start_tls(self, *args: Any, **kwargs: Any) -> "DepartingStream":
        return DepartingStream(self._stream.start_tls(*args, **kwargs))

    def close(self) -> None:
        self._stream.close()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DepartingBackend:
    """A sync network backend whose streams are `DepartingStream`s; the rest is the wrapped one."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def connect_tcp(self, *args: Any, **kwargs: Any) -> DepartingStream:
        return DepartingStream(self._backend.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> DepartingStream:
        return DepartingStream(self._backend.connect_unix_socket(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def install(client: Any) -> bool:
    """Wrap the network backend of a sync httpx or httpx2 client's pool (`DepartingBackend`);
    whether it was. An async client needs none (cancelling its request ends its read), and a
    client without a pool (a mock transport) has no socket to shut.

    httpx has no public way to the socket a request is reading before its response exists (the
    `network_stream` extension comes with the response), nor to hand its pool a network backend:
    the pool's `_network_backend` is replaced, before any connection is made.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is None or isinstance(backend, DepartingBackend):
        return False
    if inspect.iscoroutinefunction(getattr(backend, "connect_tcp", None)):
        return False
    pool._network_backend = DepartingBackend(backend)  # type: ignore[union-attr]
    return True


def has_body(scope: Scope) -> bool:
    """Whether the request declares a body (HTTP/1.1: a non-zero length, or chunked)."""
    headers = Headers(scope=scope)
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")


class CancelOnDisconnectMiddleware:
    """Cancels the app when its client leaves before the response has ended (module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        departure = Departure()
        token = _departure.set(departure)
        try:
            await self._run(scope, receive, send, departure)
        finally:
            _departure.reset(token)

    async def _run(self, scope: Scope, receive: Receive, send: Send, departure: Departure) -> None:
        # Set once the app has read the body to its end: from then on the watcher reads
        # `receive()` and hands what it reads to the app (`read` / `heard`).
        watching = anyio.Event()
        if not has_body(scope):
            watching.set()
        heard: ObjectSendStream[Message]
        read: ObjectReceiveStream[Message]
        heard, read = anyio.create_memory_object_stream[Message](math.inf)
        gone: Message | None = None
        ended = False

        async def app_receive() -> Message:
            nonlocal gone
            if gone is not None:
                return gone
            if not watching.is_set():
                message = await receive()
                if message["type"] == "http.request" and not message.get("more_body", False):
                    watching.set()
                return message
            message = await read.receive()
            if message["type"] == "http.disconnect":
                gone = message
            return message

        async def app_send(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                ended = True  # before sending: the disconnect that follows the end is no departure
            await send(message)

        async def watch(cancel: anyio.CancelScope) -> None:
            await watching.wait()
            while True:
                message = await receive()
                heard.send_nowait(message)
                if message["type"] == "http.disconnect":
                    break
            if not ended:
                departure.leave()
                cancel.cancel()

        error: Exception | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch, tasks.cancel_scope)
            try:
                await self.app(scope, app_receive, app_send)
            except Exception as exc:  # raised below as itself, not in the task group's group
                error = exc
            finally:
                tasks.cancel_scope.cancel()  # the app is done: so is the watcher
        heard.close()
        read.close()
        if error is not None:
            raise error
