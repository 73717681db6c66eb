"""What the servers expose at `/metrics`: event-loop lag, threadpool and pool occupancy, process.

Identical in every app. The monitor samples on the event loop every 10 ms and publishes each
second's peaks, so a 1 Hz scrape still sees short bursts; in `blocking` a stalled loop shows up
as lag, because the monitor itself wakes up late.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from sqlalchemy import Engine, event

from servers.timing import instrument_client, instrument_engine

PREFIX = "lab"
SAMPLE_S = 0.01
WINDOW_S = 1.0
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def http_pool_usage(client: Any) -> tuple[int, int, int] | None:
    """(active, idle, waiting) connections of the client's pool, where the library shows them."""
    transport: Any = client._transport  # httpx exposes no public pool statistics
    pool = getattr(transport, "_pool", None)
    if pool is not None:  # httpcore or httpcore2
        conns = list(pool.connections)
        idle = sum(1 for c in conns if c.is_idle())
        waiting = sum(1 for r in list(pool._requests) if r.is_queued())
        return len(conns) - idle, idle, waiting
    session = getattr(transport, "client", None)  # httpx-aiohttp: created on the first request
    connector = getattr(session, "connector", None)
    if connector is not None:  # aiohttp transport
        waiting = sum(len(w) for w in connector._waiters.values())
        return len(connector._acquired), 0, waiting
    return None


def db_pool_usage(engine: Engine) -> tuple[int, int]:
    """(checked out, capacity) of the engine's pool."""
    pool: Any = engine.pool
    return pool.checkedout(), pool.size() + max(pool._max_overflow, 0)


@dataclass(frozen=True)
class Pools:
    """What the monitor samples beside the loop and the threadpool: the app's DB pool as
    (checked out, capacity) and its HTTP client's pool as (active, idle, waiting), each a
    function returning None when there is nothing to show. The lab's apps name their engine and
    client (`observe`); `sync-async-lab probe` sums the pools it finds in a user's app."""

    db: Callable[[], tuple[int, int] | None] | None = None
    http: Callable[[], tuple[int, int, int] | None] | None = None


class Monitor:
    """Samples lag and occupancy on the loop; publishes per-second peaks as gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry)

        self.lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the event loop woke a 10 ms sleep.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.lag_max = gauge("event_loop_lag_max_seconds", "Largest loop lag in the last second.")
        self.tokens_total = gauge("threadpool_tokens_total", "anyio default limiter tokens.")
        self.tokens_in_use = gauge(
            "threadpool_tokens_in_use", "Peak threadpool tokens in use in the last second."
        )
        self.waiting = gauge(
            "threadpool_waiting", "Peak tasks waiting for a threadpool token in the last second."
        )
        self.http = gauge(
            "http_pool_connections", "Peak upstream connections in the last second.", ("state",)
        )
        self.db_out = gauge("db_pool_checked_out", "Peak DB connections checked out, last second.")
        self.db_capacity = gauge("db_pool_capacity", "DB pool size plus overflow.")

    async def run(self, pools: "Pools") -> None:
        """Sample until cancelled: the loop's lag, the threadpool and the app's `pools`."""
        loop = asyncio.get_running_loop()
        limiter = anyio.to_thread.current_default_thread_limiter()
        self.tokens_total.set(limiter.total_tokens)
        db = pools.db() if pools.db is not None else None
        if db is not None:
            self.db_capacity.set(db[1])
        peaks: dict[str, float] = {}
        window_end = loop.time() + WINDOW_S
        while True:
            # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
            start = time.perf_counter()
            await asyncio.sleep(SAMPLE_S)
            lag = max(time.perf_counter() - start - SAMPLE_S, 0.0)
            self.lag.observe(lag)
            stats = limiter.statistics()
            sample = {"lag": lag, "tokens": stats.borrowed_tokens, "waiting": stats.tasks_waiting}
            db = pools.db() if pools.db is not None else None
            if db is not None:
                sample["db"] = db[0]
            http = pools.http() if pools.http is not None else None
            if http is not None:
                sample.update(active=http[0], idle=http[1], http_waiting=http[2])
            for key, value in sample.items():
                peaks[key] = max(peaks.get(key, 0.0), value)
            if loop.time() >= window_end:
                self._publish(peaks, limiter.total_tokens, None if db is None else db[1])
                peaks = {}
                window_end = loop.time() + WINDOW_S

    def _publish(
        self, peaks: dict[str, float], total_tokens: float, db_capacity: int | None
    ) -> None:
        self.lag_max.set(peaks["lag"])
        self.tokens_total.set(total_tokens)
        self.tokens_in_use.set(peaks["tokens"])
        self.waiting.set(peaks["waiting"])
        if "db" in peaks:
            self.db_out.set(peaks["db"])
        if db_capacity is not None:
            self.db_capacity.set(db_capacity)
        for state, key in (("active", "active"), ("idle", "idle"), ("waiting", "http_waiting")):
            if key in peaks:
                self.http.labels(state).set(peaks[key])


def new_registry() -> CollectorRegistry:
    """A registry per app (not the global one), with the process's CPU and memory."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


@contextlib.asynccontextmanager
async def observe(app: FastAPI, enabled: bool = True) -> AsyncIterator[None]:
    """Instrument the app's client and engine and run the monitor while the app lives.

    The monitor task is `app.state.monitor_task`. With `enabled` false (`LAB_OBSERVE=false`)
    nothing is installed or started and the task is None; the registry keeps only its process
    collector, so `/metrics` still answers.
    """
    app.state.monitor_task = None
    if not enabled:
        yield
        return
    engine: Engine = getattr(app.state.engine, "sync_engine", app.state.engine)
    instrument_client(app.state.http)
    instrument_engine(engine)
    registry: CollectorRegistry = app.state.registry
    monitor = Monitor(registry)
    pools = Pools(db=lambda: db_pool_usage(engine), http=lambda: http_pool_usage(app.state.http))
    task = asyncio.create_task(monitor.run(pools))
    app.state.monitor_task = task
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _unregister_all(registry, keep=lambda c: isinstance(c, ProcessCollector))


def _unregister_all(registry: CollectorRegistry, keep: Callable[[Any], bool]) -> None:
    # Tests run one app's lifespan many times; metrics must not be registered twice.
    for collector in list(registry._collector_to_names):
        if not keep(collector):
            registry.unregister(collector)


@contextlib.contextmanager
def statements_counted(registry: CollectorRegistry, engine: Engine) -> Iterator[Counter]:
    """`lab_db_statements_total`: every statement the engine sends to the database (SQLAlchemy's
    `before_cursor_execute`), while the block runs. Next to the requests answered, it tells how
    many queries ran for clients that had gone (loadtests/matrices/abandon.toml). Unregistered
    with the rest of the lab's metrics when the app stops (`observe`)."""
    counter = Counter(
        f"{PREFIX}_db_statements", "Statements sent to the database.", registry=registry
    )

    def count(*_: Any) -> None:
        counter.inc()

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", count)
