"""Per-request `Server-Timing`: time in the app vs time waiting on the upstream and the database."""

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
from sqlalchemy import Engine, event
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TIMED_PREFIXES = ("/v1/", "/items")


@dataclass
class Timing:
    """Seconds one request spent waiting on each dependency."""

    upstream_s: float = 0.0
    db_s: float = 0.0

    def header(self, total_s: float) -> str:
        """The `Server-Timing` value, durations in milliseconds."""
        return (
            f"app;dur={total_s * 1000:.3f}, upstream;dur={self.upstream_s * 1000:.3f}, "
            f"db;dur={self.db_s * 1000:.3f}"
        )


# Worker threads get a copy of the context, but the copy holds the same Timing object, so
# time spent in `def` handlers is added to the request that started them.
_current: ContextVar[Timing | None] = ContextVar("lab_timing", default=None)


class ServerTimingMiddleware:
    """Adds `Server-Timing` to proxy and database routes, measured until the response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(TIMED_PREFIXES):
            await self.app(scope, receive, send)
            return
        timing = Timing()
        token = _current.set(timing)
        start = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("Server-Timing", timing.header(time.perf_counter() - start))
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            _current.reset(token)


def _request_hook(request: httpx.Request) -> None:
    request.extensions["lab_started"] = time.perf_counter()


def _response_hook(response: httpx.Response) -> None:
    timing = _current.get()
    started = response.request.extensions.get("lab_started")
    if timing is not None and started is not None:
        timing.upstream_s += time.perf_counter() - started


async def _async_request_hook(request: httpx.Request) -> None:
    _request_hook(request)


async def _async_response_hook(response: httpx.Response) -> None:
    _response_hook(response)


def instrument_client(client: Any) -> None:
    """Time every upstream call, from sending to the response headers (httpx or httpx2)."""
    if isinstance(client, httpx.AsyncClient | httpx2.AsyncClient):
        client.event_hooks = {"request": [_async_request_hook], "response": [_async_response_hook]}
    else:
        client.event_hooks = {"request": [_request_hook], "response": [_response_hook]}


def _before_execute(conn: Any, *_: Any) -> None:
    conn.info.setdefault("lab_started", []).append(time.perf_counter())


def _after_execute(conn: Any, *_: Any) -> None:
    started = conn.info["lab_started"].pop()
    timing = _current.get()
    if timing is not None:
        timing.db_s += time.perf_counter() - started


def instrument_engine(engine: Engine) -> None:
    """Time every statement the engine executes."""
    if not event.contains(engine, "before_cursor_execute", _before_execute):
        event.listen(engine, "before_cursor_execute", _before_execute)
        event.listen(engine, "after_cursor_execute", _after_execute)
