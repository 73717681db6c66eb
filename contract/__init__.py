"""The results contract, written once: names, outcomes and thresholds shared by the lab.

`loadtests` writes runs with these names, `analysis` reads them, the tests check both against
this module. It imports nothing from either (nor from `servers`): plain data only.
`results/README.md` documents every name here.
"""

import math
import re

# --- What a run is made of --------------------------------------------------------------------
SCENARIOS: tuple[str, ...] = (
    "hello",
    "chat",
    "chat_stream",
    "items_read",
    "items_write",
    "items_wait",
    "cpu",
    "mixed",
    "chat_abandon",
)
VARIANTS: tuple[str, ...] = ("sync", "async", "blocking")
CLIENTS: tuple[str, ...] = ("httpx", "httpx2", "aiohttp")
# Clients with a sync API, so `sync` and `blocking` can run them too (aiohttp is async only).
SYNC_CLIENTS: tuple[str, ...] = ("httpx", "httpx2")
NO_CLIENT = "-"
# The database and driver of a cell (summary `db`): SQLite embedded (sqlite3 in `sync` and
# `blocking`, aiosqlite in `async`) or PostgreSQL (psycopg's sync API in `sync` and `blocking`,
# psycopg's async API or asyncpg in `async`).
DB_DRIVERS: tuple[str, ...] = (
    "sqlite+pysqlite",
    "sqlite+aiosqlite",
    "postgresql+psycopg",
    "postgresql+asyncpg",
)
# Scenarios that measure the database (the report's "SQLite vs PostgreSQL" section).
DB_SCENARIOS: tuple[str, ...] = ("items_read", "items_write", "items_wait")
# The ASGI servers the lab runs its apps under (summary `server`; `python -m servers <app>
# --server NAME`, servers/launch.py says how each is started): uvicorn with uvloop and httptools
# (the default, and every run before the column), with h11, on asyncio's own loop; granian;
# hypercorn.
SERVERS: tuple[str, ...] = (
    "uvicorn-httptools",
    "uvicorn-h11",
    "uvicorn-asyncio",
    "granian",
    "hypercorn",
)
DEFAULT_SERVER = "uvicorn-httptools"

# --- Every request ends in exactly one outcome (requests.csv `outcome`) -----------------------
OK = "ok"
ERROR = "error"  # an unexpected status, a bad body or a connection error
TIMEOUT = "timeout"  # the load generator's own request timeout fired
CENSORED = "censored"  # still in flight when the cell ended: latency is its age, a lower bound
OUTCOMES: tuple[str, ...] = (OK, ERROR, TIMEOUT, CENSORED)
# Row kinds of requests.csv are `request`, `ttft`, `itl` (marks inside a stream) and `probe`.
# Kinds whose rows are requests with an outcome (ttft/itl rows are marks inside a request).
REQUEST_KINDS: tuple[str, ...] = ("request", "probe")

RAW_COLUMNS: tuple[str, ...] = (
    "ts",
    "kind",
    "name",
    "latency_ms",
    "ok",
    "outcome",
    "app_ms",
    "upstream_ms",
    "db_ms",
    # Rate mode only: the request was sent this long after its intended start (`ts`); its
    # latency counts from the intended start, so this wait is inside it. Empty in a closed loop.
    "lag_ms",
)

# Every percentile column, the percentile it is and the column counting its samples. Where the
# count does not support the percentile (`supported`), the column is written empty and the exact
# value goes to `<column>_raw`: applied once, by `apply_sample_rule`, wherever a cell's numbers
# are written (cell.json `metrics` and summary.csv).
PERCENTILE_RULE: dict[str, tuple[float, str]] = {
    "p50_ms": (50, "latency_n"),
    "p90_ms": (90, "latency_n"),
    "p95_ms": (95, "latency_n"),
    "p99_ms": (99, "latency_n"),
    "ttft_p50_ms": (50, "ttft_n"),
    "ttft_p99_ms": (99, "ttft_n"),
    "itl_p50_ms": (50, "itl_n"),
    "itl_p99_ms": (99, "itl_n"),
    "probe_p50_ms": (50, "probe_requests"),
    "probe_p99_ms": (99, "probe_requests"),
    "overhead_p50_ms": (50, "overhead_n"),
    "overhead_p99_ms": (99, "overhead_n"),
}


# --- summary.csv: names and order (types for the readers) ---------------------------------------
SUMMARY_TYPES: dict[str, str] = {
    "scenario": "str",
    "variant": "str",
    "client": "str",
    "arm": "str",
    # The server's database and driver, as SQLAlchemy names them: one of DB_DRIVERS.
    "db": "str",
    # The ASGI server the app ran under, e.g. `uvicorn-httptools` (empty: runs before the field,
    # all uvicorn with httptools and uvloop).
    "server": "str",
    "users": "int",
    # Rate mode (open loop): the offered arrival rate; empty for a closed-loop cell.
    "offered_rps": "float",
    "repeat": "int",
    "requests": "int",
    "ok": "int",
    "errors": "int",
    "timeouts": "int",
    "censored": "int",
    "failures": "int",
    "rps": "float",
    # Completions inside the window per second: `ok` requests that *ended* in the window,
    # whenever they started. In a rate cell `rps` counts the window's arrivals answered ok, some
    # of them during the drain; `served_rps` is what the server really served per second.
    "served_rps": "float",
    # Rate mode: requests actually sent during the window per second, the send lag's p99 and
    # whether every connection (slot) was busy at some point, so arrivals had to queue for one.
    "achieved_rps": "float",
    "send_lag_p99_ms": "float",
    "slots_full": "bool",
    # Latency samples (`ok` + `censored` requests of the window): what the percentiles stand on.
    "latency_n": "int",
    "p50_ms": "float",
    "p90_ms": "float",
    "p95_ms": "float",
    "p99_ms": "float",
    "max_ms": "float",
    "censored_min_ms": "float",
    "error_p50_ms": "float",
    "error_max_ms": "float",
    "ttft_n": "int",
    "ttft_p50_ms": "float",
    "ttft_p99_ms": "float",
    "itl_n": "int",
    "itl_p50_ms": "float",
    "itl_p99_ms": "float",
    "probe_requests": "int",
    "probe_p50_ms": "float",
    "probe_p99_ms": "float",
    "probe_max_ms": "float",
    "little_ratio": "float",
    "steady": "bool",
    "users_in_loop": "int",
    "starved": "int",
    "gap_max_s": "float",
    "stalled": "bool",
    "stall_evidence": "str",
    "threads": "str",
    "loadgen_cpu_pct": "float",
    "upstream_cpu_pct": "float",
    "server_cpu_pct": "float",
    # PostgreSQL's CPU (the postmaster and its backends) in % of one core; empty on SQLite.
    "db_cpu_pct": "float",
    "cpu_ms_per_req": "float",
    "upstream_served_ms": "float",
    "upstream_drift_ms": "float",
    "cut_off": "int",
    "valid": "bool",
    "invalid_reason": "str",
    "status": "str",
    "reason": "str",
    "cell_id": "str",
    "duration_s": "float",
    "warmup_s": "float",
    "threadpool_tokens": "int",
    # The server's SQLAlchemy pool: connections kept, and extra ones allowed beyond them.
    "db_pool_size": "int",
    "db_max_overflow": "int",
    "observe": "bool",
    "upstream_latency_ms": "float",
    "loop_lag_max_ms": "float",
    "loop_lag_p99_ms": "float",
    "threadpool_peak_in_use": "float",
    "threadpool_peak_waiting": "float",
    "http_pool_peak_active": "float",
    "http_pool_peak_waiting": "float",
    "db_pool_peak_checked_out": "float",
    "server_rss_peak_mb": "float",
    # Requests with a `Server-Timing` header: what the overhead percentiles stand on.
    "overhead_n": "int",
    "overhead_p50_ms": "float",
    "overhead_p99_ms": "float",
    # The exact percentile whatever its sample count (see PERCENTILE_RULE): the columns above are
    # empty when their count does not support them; these never are, and say so in their name.
    **{f"{column}_raw": "float" for column in PERCENTILE_RULE},
}
SUMMARY_COLUMNS: tuple[str, ...] = tuple(SUMMARY_TYPES)
# Filled from the cell's /metrics series (loadtests/scrape.py).
MECHANISM_COLUMNS: tuple[str, ...] = SUMMARY_COLUMNS[
    SUMMARY_COLUMNS.index("loop_lag_max_ms") : SUMMARY_COLUMNS.index("overhead_p50_ms")
]
STATUSES: tuple[str, ...] = ("ok", "failed")
# What a cell is, as the console, summary and report name it (most serious first).
STALLED = "stalled"
NOT_STEADY = "not steady"
INVALID = "invalid"

# --- Rate mode (open loop) ----------------------------------------------------------------------
ARRIVALS: tuple[str, ...] = ("poisson", "constant")
# A rate cell must send at least this share of the arrivals its schedule held in the window
# (the realized count, not rate x seconds: Poisson counts vary). Falling short while a
# connection was free is the load generator's fault: `invalid: load generator behind`. Falling
# short because every connection waited on the server is the server's queue (`slots_full`):
# those arrivals are sent late and their wait counts in their latency.
RATE_TOLERANCE = 0.05
LOADGEN_BEHIND = "load generator behind"

# capacity.csv: one row per SLO capacity search (variant x scenario x pass); see contract.slo.
CAPACITY_TYPES: dict[str, str] = {
    "scenario": "str",
    "variant": "str",
    "client": "str",
    "arm": "str",
    "repeat": "int",
    "slo": "str",
    # The highest offered rate that met the SLO (empty: not even the lowest did).
    "capacity_rps": "float",
    # The lowest offered rate above it that did not (empty: every rate tried met it).
    "limit_rps": "float",
    # How the search ended; one of CAPACITY_BOUNDS.
    "bound": "str",
    # Why limit_rps failed: the SLO part it missed, a stall, or why it could not be judged.
    "limit_reason": "str",
    "p99_at_capacity_ms": "float",
    "cells": "int",
    "cell_ids": "str",
}
CAPACITY_COLUMNS: tuple[str, ...] = tuple(CAPACITY_TYPES)
# bracketed: capacity <= true capacity < limit. below_lowest: the lowest rate tried failed.
# above_highest: the highest rate tried passed (a lower bound). load_side: the next rate could
# not be offered validly (the load generator fell behind), so capacity is a lower bound.
CAPACITY_BOUNDS: tuple[str, ...] = ("bracketed", "below_lowest", "above_highest", "load_side")

# --- Thresholds -------------------------------------------------------------------------------
# The load side is saturated above this share of its core; its numbers are then its own.
LOADGEN_MAX_PCT = 90.0
# Locust, the upstream and PostgreSQL share one core: together they must leave it some headroom.
LOAD_CORE_MAX_PCT = 95.0
# The parts of an `invalid_reason` that blame the load side alone (loadtests.summary.validity,
# loadtests.distributed.saturated): the server's own cost per request is still measured then,
# only its throughput is not.
_LOAD_SIDE = re.compile(
    r"^(load generator at [\d.]+% of its core|load core at [\d.]+%.*"
    r"|load host \S+ \(worker \d+\) at [\d.]+% of its core|load host \S+ at [\d.]+% of its CPUs"
    r"|Locust master at [\d.]+% of its core)$"
)


def load_side_only(reason: object) -> bool:
    """Whether an `invalid_reason` blames only the load generator (the shared load core here,
    or a load host's worker)."""
    parts = [p.strip() for p in str(reason or "").split(";") if p.strip()]
    return bool(parts) and all(_LOAD_SIDE.match(p) for p in parts)


# Little's law for a closed loop: users = throughput x mean latency. A cell whose measured
# users/(throughput x latency) is further than this from 1 was not in a steady state.
LITTLE_TOLERANCE = 0.20
# A percentile q is printed only with at least this many samples beyond it: p50 needs 20,
# p90 100, p95 200, p99 1,000. Below that the report shows "n too small".
SAMPLES_BEYOND = 10
# A stall: requests in flight and none completed for `stall_s` (a matrix setting), which must
# exceed every timeout in the server by this margin so a deadlock is told from a slow error.
STALL_MARGIN_S = 2.0
# A shorter gap without completions is still worth naming: its evidence goes in `stall_evidence`.
GAP_NOTE_S = 2.0
# Summary `threads` starts with this when one worker thread holds httpcore's connection-pool lock
# and waits for it (loadtests/threads.py): a deadlock no timeout ends.
SELF_DEADLOCK = "self-deadlock"
# A verdict's lead must exceed the run's own repeat spread and this floor, whichever is larger.
MIN_NOISE = 0.05
# Scenarios judged by another summary column than throughput (lower is better): where the load
# generator saturates before the server, server CPU per request still tells the styles apart.
VERDICT_METRIC = {"hello": "cpu_ms_per_req"}


def raw_column(column: str) -> str:
    """Where the exact value of a percentile column is kept whatever its count: `p99_ms_raw`."""
    return f"{column}_raw"


def apply_sample_rule(values: dict[str, object]) -> dict[str, object]:
    """A copy of `values` (a cell's metrics, or a summary row) with the sample rule applied.

    Each percentile column keeps its value only when its sample count supports it; the exact
    value is kept in `<column>_raw` either way. Idempotent: a value already moved to `_raw`
    stays there. Rows from before the counts existed (cell.json schema 1) get `latency_n` from
    `ok + censored`, and ttft/itl counts from nothing: their percentiles are kept (the raw
    columns say the same), as the lab cannot count them afresh.
    """
    out = dict(values)
    if out.get("latency_n") is None and out.get("ok") is not None:
        out["latency_n"] = int(out.get("ok") or 0) + int(out.get("censored") or 0)
    for column, (q, count) in PERCENTILE_RULE.items():
        raw = raw_column(column)
        value = out.get(raw) if out.get(raw) is not None else out.get(column)
        out[raw] = value
        n = out.get(count)
        known = n is not None and not (isinstance(n, float) and math.isnan(n))
        keep = value is not None and (not known or supported(q, int(n)))  # type: ignore[arg-type]
        out[column] = value if keep else None
    return out


def min_samples(q: float) -> int:
    """Samples needed to print percentile `q` (0-100): SAMPLES_BEYOND beyond it."""
    if q >= 100:
        return 1
    return math.ceil(SAMPLES_BEYOND / (1 - q / 100) - 1e-9)


def supported(q: float, n: int | None) -> bool:
    """Whether `n` samples support printing percentile `q`."""
    return n is not None and n >= min_samples(q)


# --- The server environment the orchestrator may set (checked against servers.settings) -------
# Name of the Settings field -> environment variable. A typo here fails a test.
SERVER_ENV: dict[str, str] = {
    name: f"LAB_{name.upper()}"
    for name in (
        "db_path",
        "db_reset",
        "db_seed_rows",
        "db_pool_timeout_s",
        "db_pool_size",
        "db_max_overflow",
        "db_url",
        "db_async_driver",
        "db_session",
        "db_max_concurrency",
        "threadpool_tokens",
        "fastapi_overflow",
        "upstream_url",
        "http_client",
        "http_timeout_s",
        "http_max_connections",
        "http_max_concurrency",
        "stream_close",
        "cancel_on_disconnect",
        "observe",
        "mock_ttft_ms",
        "mock_itl_ms",
    )
}
# Server timeouts a stall threshold must exceed, and their defaults in servers.settings.
SERVER_TIMEOUTS: tuple[str, ...] = ("db_pool_timeout_s", "http_timeout_s")

# --- Schema versions of the files a run writes ---------------------------------------------------
# cell.json and manifest.json carry `schema_version` (results/README.md "Schema versions" says
# what changed); a file without one is version 1. Readers accept every version up to these.
CELL_SCHEMA_VERSION = 2
MANIFEST_SCHEMA_VERSION = 2

# --- Calibration (manifest.json `calibration`) ---------------------------------------------------
CALIBRATION_KEYS: tuple[str, ...] = ("python_loop_per_s", "asgi_hello_per_s")
