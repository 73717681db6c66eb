"""From raw per-request rows to one summary row per cell: exact percentiles and validity."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# results/README.md is the contract: names and order of summary.csv.
SUMMARY_COLUMNS = [
    "scenario",
    "variant",
    "client",
    "users",
    "repeat",
    "requests",
    "failures",
    "rps",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "probe_requests",
    "probe_p50_ms",
    "probe_p99_ms",
    "probe_max_ms",
    "loadgen_cpu_pct",
    "upstream_cpu_pct",
    "server_cpu_pct",
    "cut_off",
    "valid",
    "invalid_reason",
    "status",
    "reason",
    "cell_id",
    "duration_s",
    "warmup_s",
    "threadpool_tokens",
    "upstream_latency_ms",
    "loop_lag_max_ms",
    "loop_lag_p99_ms",
    "threadpool_peak_in_use",
    "threadpool_peak_waiting",
    "http_pool_peak_active",
    "http_pool_peak_waiting",
    "db_pool_peak_checked_out",
    "server_rss_peak_mb",
    "overhead_p50_ms",
    "overhead_p99_ms",
]
# Filled from the cell's /metrics series (loadtests/scrape.py).
MECHANISM_COLUMNS = SUMMARY_COLUMNS[SUMMARY_COLUMNS.index("loop_lag_max_ms") : -2]

INT_COLUMNS = ["users", "repeat", "requests", "failures", "probe_requests", "cut_off"]
INT_COLUMNS += ["threadpool_tokens"]

# The load side is saturated above this share of its core; its numbers are then its own.
LOADGEN_MAX_PCT = 90.0
# Locust and the upstream share one core: together they must leave it some headroom too.
LOAD_CORE_MAX_PCT = 95.0


def load_requests(path: Path) -> pd.DataFrame:
    """Read a cell's requests.csv."""
    dtypes = {"ts": float, "kind": str, "name": str, "latency_ms": float, "ok": int}
    dtypes |= {"app_ms": float, "upstream_ms": float, "db_ms": float}
    return pd.read_csv(path, dtype=dtypes)


def percentiles(latencies: Any, qs: tuple[float, ...]) -> list[float | None]:
    """Exact percentiles (numpy's linear interpolation); None for no data."""
    values = np.asarray(latencies, dtype=float)
    if values.size == 0:
        return [None] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]


def summarize_requests(rows: pd.DataFrame, start: float, end: float) -> dict[str, Any]:
    """Counts, rps and latency percentiles of requests that started in [start, end)."""
    window = rows[(rows["ts"] >= start) & (rows["ts"] < end)]
    main = window[window["kind"] == "request"]
    ok = main[main["ok"] == 1]
    p50, p90, p95, p99, pmax = percentiles(main["latency_ms"], (50, 90, 95, 99, 100))
    ttft = window.loc[(window["kind"] == "ttft") & (window["ok"] == 1), "latency_ms"]
    itl = window.loc[(window["kind"] == "itl") & (window["ok"] == 1), "latency_ms"]
    # A probe asks "how slow was a trivial request while the load ran": count every probe that
    # was in flight during the window, since behind a blocked loop none may *start* in it.
    probes = rows[rows["kind"] == "probe"]
    probe = probes[(probes["ts"] < end) & (probes["ts"] + probes["latency_ms"] / 1000 > start)]
    ttft_p50, ttft_p99 = percentiles(ttft, (50, 99))
    itl_p50, itl_p99 = percentiles(itl, (50, 99))
    probe_p50, probe_p99, probe_max = percentiles(probe["latency_ms"], (50, 99, 100))
    overhead_p50, overhead_p99 = percentiles(app_overhead(main), (50, 99))
    return {
        "requests": len(main),
        "failures": int((main["ok"] == 0).sum()),
        "rps": len(ok) / (end - start) if end > start else None,
        "p50_ms": p50,
        "p90_ms": p90,
        "p95_ms": p95,
        "p99_ms": p99,
        "max_ms": pmax,
        "ttft_p50_ms": ttft_p50,
        "ttft_p99_ms": ttft_p99,
        "itl_p50_ms": itl_p50,
        "itl_p99_ms": itl_p99,
        "probe_requests": len(probe) if len(probe) else None,
        "probe_p50_ms": probe_p50,
        "probe_p99_ms": probe_p99,
        "probe_max_ms": probe_max,
        "overhead_p50_ms": overhead_p50,
        "overhead_p99_ms": overhead_p99,
    }


def app_overhead(rows: pd.DataFrame) -> pd.Series:
    """Per request: time in the app minus waiting on upstream and DB (`Server-Timing`)."""
    if "app_ms" not in rows:
        return pd.Series(dtype=float)
    timed = rows.dropna(subset=["app_ms"])
    return timed["app_ms"] - timed["upstream_ms"].fillna(0) - timed["db_ms"].fillna(0)


def validity(
    loadgen_cpu_pct: float | None,
    upstream_cpu_pct: float | None,
    spawned: int | None,
    target_users: int,
    shared_load_core: bool = True,
) -> tuple[bool, str]:
    """Whether a cell's numbers describe the server rather than the load side; why not."""
    reasons = []
    if loadgen_cpu_pct is None:
        reasons.append("load generator CPU not measured")
    elif loadgen_cpu_pct > LOADGEN_MAX_PCT:
        reasons.append(f"load generator at {loadgen_cpu_pct:.0f}% of its core")
    if upstream_cpu_pct is not None and upstream_cpu_pct > LOADGEN_MAX_PCT:
        reasons.append(f"upstream at {upstream_cpu_pct:.0f}% of its core")
    if (
        shared_load_core
        and loadgen_cpu_pct is not None
        and upstream_cpu_pct is not None
        and loadgen_cpu_pct + upstream_cpu_pct > LOAD_CORE_MAX_PCT
    ):
        total = loadgen_cpu_pct + upstream_cpu_pct
        reasons.append(f"load core at {total:.0f}% (Locust + upstream)")
    if spawned is None or spawned < target_users:
        reasons.append(f"reached {spawned or 0} of {target_users} users")
    return not reasons, "; ".join(reasons)


def summary_row(cell: dict[str, Any]) -> dict[str, Any]:
    """One summary.csv row from a cell.json document."""
    settings = cell.get("settings", {})
    cpu = cell.get("cpu", {})
    row: dict[str, Any] = {
        **{k: cell.get(k) for k in ("scenario", "variant", "client", "users", "repeat")},
        **cell.get("metrics", {}),
        "loadgen_cpu_pct": cpu.get("loadgen_pct"),
        "upstream_cpu_pct": cpu.get("upstream_pct"),
        "server_cpu_pct": cpu.get("server_pct"),
        "cut_off": cell.get("cut_off"),
        "valid": bool(cell.get("valid")),
        "invalid_reason": cell.get("invalid_reason", ""),
        "status": cell.get("status"),
        "reason": cell.get("reason", ""),
        "cell_id": cell.get("cell_id"),
        "duration_s": settings.get("duration_s"),
        "warmup_s": settings.get("warmup_s"),
        "threadpool_tokens": settings.get("threadpool_tokens"),
        "upstream_latency_ms": settings.get("upstream_latency_ms"),
        **{k: cell.get("mechanisms", {}).get(k) for k in MECHANISM_COLUMNS},
    }
    return {col: row.get(col) for col in SUMMARY_COLUMNS}


def write_summary(run_dir: Path, order: list[str] | None = None) -> Path:
    """Write summary.csv from every `<cell>/cell.json` of a run (in `order` of cell ids)."""
    cells = {p.parent.name: json.loads(p.read_text()) for p in run_dir.glob("*/cell.json")}
    ids = [c for c in (order or []) if c in cells] + sorted(set(cells) - set(order or []))
    frame = pd.DataFrame.from_records([summary_row(cells[c]) for c in ids], columns=SUMMARY_COLUMNS)
    # Nullable ints, so an empty cell stays empty instead of turning the column into floats.
    frame = frame.astype(dict.fromkeys(INT_COLUMNS, "Int64"))
    path = run_dir / "summary.csv"
    frame.to_csv(path, index=False, float_format="%.3f")
    return path
