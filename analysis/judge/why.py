"""The verdict table's "why": which mechanism the server's own numbers show for a losing style."""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.vocabulary import BLOCKING, ordered

# The lag monitor wakes every 10 ms; an idle or merely busy loop stays within a few ms of that
# (GC pauses and scheduling on a loaded 2-core box: tens of ms at most). 100 ms late means some
# callback held the loop for a tenth of a second: every request on the worker waited for it.
LOOP_BLOCKED_MS = 100.0
# All tokens busy is not enough on its own (a pool sized exactly right fills up); a task queued
# for a token while all are busy is the `def` style hitting anyio's limiter.
THREADPOOL_MIN_WAITING = 1.0
# Any request waiting for an upstream connection means the client pool, not the upstream, set
# the pace at that moment.
HTTP_POOL_MIN_WAITING = 1.0
# One worker runs Python on one core at a time (the GIL): at 90% of a core it has no CPU left
# (the rest is syscalls and sampling granularity), so more concurrency cannot help.
CPU_BOUND_PCT = 90.0
# A server that finishes nothing while its CPU idles is not slow but stuck: in `def` apps, every
# thread waits for a pooled connection held by a request that waits for a thread.
STALLED_MAX_CPU_PCT = 10.0
NOTHING = "—"


@dataclass(frozen=True)
class Limits:
    """Capacities from the run's settings that a peak is compared with (None = unknown)."""

    db_pool_capacity: float | None = None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "Limits":
        """The DB pool's capacity (pool size + overflow) from the manifest's server settings."""
        settings = manifest.get("server_settings")
        if not isinstance(settings, Mapping):
            return cls()
        size, overflow = settings.get("db_pool_size"), settings.get("db_max_overflow", 0)
        if not isinstance(size, int | float) or not isinstance(overflow, int | float):
            return cls()
        return cls(db_pool_capacity=float(size + overflow))


def _get(row: pd.Series, column: str) -> float:
    value = row.get(column)
    if value is None or pd.isna(value):
        return math.nan
    return float(value)


def _n(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 10 or x == round(x) else f"{x:.1f}"


def mechanisms(row: pd.Series, limits: Limits | None = None) -> list[str]:
    """Every mechanism one style's aggregated row crosses a threshold for, with its numbers."""
    limits = limits or Limits()
    found: list[str] = []
    cpu = _get(row, "server_cpu_pct")
    if _get(row, "rps") == 0 and cpu < STALLED_MAX_CPU_PCT:
        found.append(f"stalled (no request finished, server {_n(cpu)}% of a core)")
    lag_max, lag_p99 = _get(row, "loop_lag_max_ms"), _get(row, "loop_lag_p99_ms")
    if lag_max >= LOOP_BLOCKED_MS:
        p99 = f", p99 {_n(lag_p99)} ms" if not math.isnan(lag_p99) else ""
        found.append(f"loop blocked (max lag {_n(lag_max)} ms{p99})")
    in_use, waiting = _get(row, "threadpool_peak_in_use"), _get(row, "threadpool_peak_waiting")
    tokens = _get(row, "threadpool_tokens")
    # Both gauges are per-second peaks, possibly of different instants: ask for both to agree.
    if waiting >= THREADPOOL_MIN_WAITING and (math.isnan(tokens) or in_use >= tokens):
        of = f"/{_n(tokens)}" if not math.isnan(tokens) else ""
        found.append(f"threadpool saturated ({_n(in_use)}{of} tokens, {_n(waiting)} waiting)")
    http_waiting = _get(row, "http_pool_peak_waiting")
    if http_waiting >= HTTP_POOL_MIN_WAITING:
        found.append(f"HTTP pool exhausted ({_n(http_waiting)} waiting)")
    checked_out = _get(row, "db_pool_peak_checked_out")
    capacity = limits.db_pool_capacity
    if capacity is not None and checked_out >= capacity:
        found.append(f"DB pool exhausted ({_n(checked_out)}/{_n(capacity)} connections)")
    if cpu >= CPU_BOUND_PCT:
        found.append(f"CPU-bound (server {_n(cpu)}% of a core)")
    return found


def explained_styles(at: pd.DataFrame, winners: Iterable[str]) -> list[str]:
    """The styles a why is given for: every non-winner (all, with no clear winner), `blocking`."""
    won = set(winners)
    styles = [s for s in ordered(at.index) if s not in won]
    if BLOCKING in at.index and BLOCKING not in styles:
        # Tied with the winner (e.g. /hello, no I/O) it still deserves a look at its loop.
        styles.append(BLOCKING)
    return styles


def explain(at: pd.DataFrame, winners: Iterable[str], limits: Limits | None = None) -> str:
    """The why cell: one line per explained style with a mechanism, or `—` when none shows."""
    lines = []
    for style in explained_styles(at, winners):
        found = mechanisms(at.loc[style], limits)
        if found:
            lines.append(f"`{style}`: {'; '.join(found)}")
    return "\n".join(lines) or NOTHING


def thresholds_text() -> str:
    """The thresholds in words, for the report."""
    return (
        f"loop blocked: max event-loop lag >= {LOOP_BLOCKED_MS:g} ms; threadpool saturated: "
        f"every token in use and >= {THREADPOOL_MIN_WAITING:g} task waiting; HTTP pool "
        f"exhausted: >= {HTTP_POOL_MIN_WAITING:g} request waiting for a connection; DB pool "
        f"exhausted: checked-out connections at pool size + overflow; CPU-bound: server >= "
        f"{CPU_BOUND_PCT:g}% of one core; stalled: as the run's stall detection flagged it "
        f"(with its evidence), or, in a run without it, no request finished while the server "
        f"used < {STALLED_MAX_CPU_PCT:g}% of a core"
    )
