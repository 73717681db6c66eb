"""The lab's instrumentation around a user's app, added from outside: ASGI middleware + lifespan.

`Instrumented(app, ...)` is what `python -m probe.serve` hands uvicorn. It adds, without
touching the app:
- `/__lab/ready`, `/__lab/ping`: answered by the wrapper on the loop, no thread, no user code
  (ready is what the harness polls; ping is the light route Locust's probe user calls beside
  the load, so its latency is the loop's own responsiveness);
- `/__lab/metrics`: the lab's gauges (`servers.metrics.Monitor`: event-loop lag, threadpool
  tokens in use and waiting, and the pools of every SQLAlchemy engine and httpx client the app
  made, tracked by `FoundPools`), in the format `loadtests/scrape.py` reads;
- `/__lab/blocking`: the loop sampler's episodes (`probe.watch`);
- `Server-Timing: app;dur=...` on every other response (time to the response's start).
The lifespan wrapper starts the monitor and the sampler once the app's own startup completed
(its lifespan may size the threadpool itself; the arm's token count is applied after it).
"""

import asyncio
import contextlib
import functools
import importlib
import json
import time
import weakref
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from probe.arms import set_tokens
from probe.watch import LoopWatch
from servers.metrics import Monitor, Pools, new_registry

PREFIX = "/__lab/"
READY = f"{PREFIX}ready"
PING = f"{PREFIX}ping"
METRICS = f"{PREFIX}metrics"
BLOCKING = f"{PREFIX}blocking"
POOLS = f"{PREFIX}pools"


class FoundPools:
    """Every SQLAlchemy pool and httpx client the app creates, summed for the monitor.

    `track()` runs before the app is imported and wraps the libraries' constructors to keep a
    weak reference to each instance: no walk of the heap (a `gc.get_objects()` walk held the loop
    for 54 ms on the example app), and an engine made lazily on the first request is seen too.
    Only libraries the lab's environment has are tracked; an app without them has no pools.
    """

    def __init__(self) -> None:
        self.db: weakref.WeakSet[Any] = weakref.WeakSet()
        self.http: weakref.WeakSet[Any] = weakref.WeakSet()

    def track(self) -> None:
        """Wrap `sqlalchemy.pool.Pool.__init__` and the httpx clients' `__init__`."""
        targets: list[tuple[str, str, weakref.WeakSet[Any]]] = [
            ("sqlalchemy.pool", "Pool", self.db),
            ("httpx", "Client", self.http),
            ("httpx", "AsyncClient", self.http),
            ("httpx2", "Client", self.http),
            ("httpx2", "AsyncClient", self.http),
        ]
        for module_name, name, into in targets:
            try:
                cls = getattr(importlib.import_module(module_name), name)
            except (ImportError, AttributeError):
                continue
            _keep_instances(cls, into)

    def db_usage(self) -> tuple[int, int] | None:
        """(checked out, capacity) summed over the QueuePools found; None without one."""
        out = capacity = 0
        found = False
        for pool in list(self.db):
            checked = getattr(pool, "checkedout", None)
            if checked is None:
                continue
            found = True
            out += checked()
            size = pool.size() if hasattr(pool, "size") else 0
            capacity += size + max(getattr(pool, "_max_overflow", 0), 0)
        return (out, capacity) if found else None

    def http_usage(self) -> tuple[int, int, int] | None:
        """(active, idle, waiting) summed over the httpx clients found; None without one."""
        from servers.metrics import http_pool_usage

        totals = [0, 0, 0]
        found = False
        for client in list(self.http):
            usage = http_pool_usage(client)
            if usage is not None:
                found = True
                totals = [a + b for a, b in zip(totals, usage, strict=True)]
        return (totals[0], totals[1], totals[2]) if found else None

    def describe(self) -> dict[str, Any]:
        """What was found, for `/__lab/pools` and the report."""
        return {
            "db": [
                {
                    "pool": type(p).__name__,
                    "size": _call(p, "size"),
                    "overflow": getattr(p, "_max_overflow", None),
                }
                for p in self.db
            ],
            "http": [type(c).__name__ for c in self.http],
        }


def _keep_instances(cls: type, into: "weakref.WeakSet[Any]") -> None:
    original = cls.__init__
    if getattr(original, "__lab_tracked__", False):
        return

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        into.add(self)

    init.__lab_tracked__ = True  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]


def _call(obj: Any, name: str) -> Any:
    method = getattr(obj, name, None)
    return method() if callable(method) else None


class Instrumented:
    """The user's ASGI app with the lab's routes, gauges, loop sampler and Server-Timing."""

    def __init__(
        self, app: ASGIApp, watch: LoopWatch, pools: FoundPools, tokens: int | None = None
    ) -> None:
        self.app = app
        self.watch = watch
        self.tokens = tokens
        self.registry = new_registry()
        self.monitor = Monitor(self.registry)
        self.pools = pools
        self.facts: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._watching: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        """Apply the token arm, find the pools, start the monitor and the sampler (once)."""
        if self._watching is not None:
            return
        self.facts["tokens"] = set_tokens(self.tokens)
        self.watch.facts.update(self.facts, pools=self.pools.describe())
        self._watching = contextlib.AsyncExitStack()
        await self._watching.enter_async_context(self.watch.running())
        pools = Pools(db=self.pools.db_usage, http=self.pools.http_usage)
        self._tasks.append(asyncio.create_task(self.monitor.run(pools)))

    async def stop(self) -> None:
        """Stop what `start` started."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._watching is not None:
            await self._watching.aclose()
            self._watching = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(PREFIX):
            await self.lab_route(path, scope, receive, send)
            return
        await self.start()
        await self.timed(scope, receive, send)

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's own lifespan, with the lab's start after its startup and stop after its
        shutdown; an app without lifespan support gets the lab's start on its first request."""

        async def sending(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.start()
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.stop()
            await send(message)

        await self.app(scope, receive, sending)

    async def timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The user's route, with `Server-Timing: app;dur=` (ms to the response's start)."""
        start = time.perf_counter()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # An app that times itself (the lab's own apps do) keeps its own `app` entry.
                if any("app;dur=" in v for v in headers.getlist("server-timing")):
                    await send(message)
                    return
                headers.append(
                    "Server-Timing", f"app;dur={(time.perf_counter() - start) * 1000:.3f}"
                )
            await send(message)

        await self.app(scope, receive, sending)

    async def lab_route(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        """The lab's own routes, answered here (never by the app)."""
        await self.start()
        if path == METRICS:
            await respond(send, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path == BLOCKING:
            body = json.dumps(self.watch.report())
            await respond(send, 200, body.encode(), "application/json")
        elif path == POOLS:
            await respond(send, 200, json.dumps(self.pools.describe()).encode(), "application/json")
        elif path in (READY, PING):
            await respond(send, 200, b'{"status":"ready"}', "application/json")
        else:
            await respond(send, 404, b'{"detail":"not a lab route"}', "application/json")


async def respond(send: Send, status: int, body: bytes, media_type: str) -> None:
    """A whole response in two ASGI messages."""
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def route_codes(app: Any) -> dict[Any, str]:
    """Code objects of each route's endpoint and dependencies -> the route's id (inventory's)."""
    from probe.arms import dependants  # noqa: F401  (same walk as the arms)
    from probe.inventory import function_of, route_contexts, route_id

    codes: dict[Any, str] = {}
    for context in route_contexts(app):
        dependant = getattr(context, "dependant", None)
        methods = sorted(m for m in (getattr(context, "methods", None) or []) if m != "HEAD")
        if dependant is None or not methods:
            continue
        rid = route_id(methods[0], getattr(context, "path_format", "") or "")

        def add(call: Callable[..., Any] | None, rid: str = rid) -> None:
            func = function_of(call) if call is not None else None
            code = getattr(getattr(func, "__lab_flipped__", func), "__code__", None)
            if code is not None:
                codes.setdefault(code, rid)

        add(dependant.call)
        stack = list(dependant.dependencies or [])
        while stack:
            sub = stack.pop()
            add(sub.call)
            stack.extend(sub.dependencies or [])
    return codes
