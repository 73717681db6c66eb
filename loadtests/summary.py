"""From raw per-request rows to one summary row per cell: outcomes, exact percentiles, validity.

Every request that started in the window counts, in exactly one outcome. Latency percentiles
are over `ok` and `censored` requests (censored ones at their age when the cell ended, a lower
bound); failed requests' latencies are reported apart. Little's law checks the steady state.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contract import (
    CENSORED,
    ERROR,
    LITTLE_TOLERANCE,
    LOAD_CORE_MAX_PCT,
    LOADGEN_BEHIND,
    LOADGEN_MAX_PCT,
    MECHANISM_COLUMNS,
    OK,
    OUTCOMES,
    RATE_TOLERANCE,
    SUMMARY_COLUMNS,
    SUMMARY_TYPES,
    TIMEOUT,
    apply_sample_rule,
)
from contract.cell import CellResult
from loadtests.files import write_atomic

INT_COLUMNS = [c for c, kind in SUMMARY_TYPES.items() if kind == "int"]


def load_requests(path: Path) -> pd.DataFrame:
    """Read a cell's requests.csv (an `outcome` column is derived from `ok` in older files)."""
    dtypes = {"ts": float, "kind": str, "name": str, "latency_ms": float, "ok": int}
    dtypes |= {"outcome": str, "app_ms": float, "upstream_ms": float, "db_ms": float}
    dtypes |= {"lag_ms": float}
    return with_outcomes(pd.read_csv(path, dtype=dtypes), str(path))


def with_outcomes(rows: pd.DataFrame, source: str = "requests") -> pd.DataFrame:
    """Rows with a checked `outcome` column (derived from `ok` where a file predates it)."""
    if "outcome" not in rows:
        rows = rows.assign(outcome=np.where(rows["ok"] == 1, OK, ERROR))
    unknown = set(rows["outcome"].dropna()) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"{source}: unknown outcomes {sorted(unknown)}; known: {OUTCOMES}")
    return rows


def percentiles(latencies: Any, qs: tuple[float, ...]) -> list[float | None]:
    """Exact percentiles (numpy's linear interpolation); None for no data."""
    values = np.asarray(latencies, dtype=float)
    if values.size == 0:
        return [None] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]


@dataclass(frozen=True)
class Gaps:
    """Times without a completed request, in the window and the drain."""

    longest_s: float
    bounds: tuple[float, float]
    since_last_s: float
    in_flight: int
    ended_by_errors: int


def completion_gaps(main: pd.DataFrame, start: float, end: float) -> Gaps:
    """The longest time without a completion in [start, end], and the wait since the last one.

    `end` is when the cell ended; when requests were censored there, the wait from the last
    completion to it counts as a gap too (they were in flight all that time).
    """
    finished = main[main["outcome"] != CENSORED]
    ends = (finished["ts"] + finished["latency_ms"] / 1000).to_numpy()
    done = np.sort(ends[(ends >= start) & (ends <= end)])
    last = float(done[-1]) if done.size else start
    censored = bool((main["outcome"] == CENSORED).any())
    points = np.concatenate(([start], done, [end] if censored else []))
    if points.size < 2:
        return Gaps(0.0, (start, start), end - last, 0, 0)
    i = int(np.diff(points).argmax())
    lo, hi = float(points[i]), float(points[i + 1])
    mid = (lo + hi) / 2
    stop = main["ts"] + main["latency_ms"] / 1000
    in_flight = int(((main["ts"] <= mid) & (stop > mid)).sum())
    failed = main["outcome"].isin([ERROR, TIMEOUT])
    ended_by_errors = int((failed & (stop >= hi) & (stop <= hi + 0.5)).sum())
    return Gaps(hi - lo, (lo, hi), end - last, in_flight, ended_by_errors)


def summarize_requests(
    rows: pd.DataFrame,
    start: float,
    end: float,
    users: int | None = None,
    cell_end: float | None = None,
    cell_start: float | None = None,
) -> dict[str, Any]:
    """Outcomes, rps and latency percentiles of the requests that started in [start, end).

    `users` (closed loop) enables the Little's-law check; `cell_start` and `cell_end` bound the
    completion gaps (a stall that began in the warm-up counts from there).
    """
    rows = with_outcomes(rows)
    window = rows[(rows["ts"] >= start) & (rows["ts"] < end)]
    main = window[window["kind"] == "request"]
    counts = main["outcome"].value_counts()
    latency = main[main["outcome"].isin([OK, CENSORED])]
    failed = main[main["outcome"].isin([ERROR, TIMEOUT])]
    censored = main.loc[main["outcome"] == CENSORED, "latency_ms"]
    p50, p90, p95, p99, pmax = percentiles(latency["latency_ms"], (50, 90, 95, 99, 100))
    err_p50, err_max = percentiles(failed["latency_ms"], (50, 100))
    ttft = window.loc[(window["kind"] == "ttft") & (window["ok"] == 1), "latency_ms"]
    itl = window.loc[(window["kind"] == "itl") & (window["ok"] == 1), "latency_ms"]
    # A probe asks "how slow was a trivial request while the load ran": count every probe that
    # was in flight during the window, since behind a blocked loop none may *start* in it.
    probes = rows[rows["kind"] == "probe"]
    probe = probes[(probes["ts"] < end) & (probes["ts"] + probes["latency_ms"] / 1000 > start)]
    ttft_p50, ttft_p99 = percentiles(ttft, (50, 99))
    itl_p50, itl_p99 = percentiles(itl, (50, 99))
    probe_p50, probe_p99, probe_max = percentiles(probe["latency_ms"], (50, 99, 100))
    overhead = app_overhead(main)
    overhead_p50, overhead_p99 = percentiles(overhead, (50, 99))
    seconds = end - start
    ok = int(counts.get(OK, 0))
    # Served: ok completions inside the window, whenever those requests started.
    every = rows[rows["kind"] == "request"]
    ended = every["ts"] + every["latency_ms"] / 1000
    served = int(((every["outcome"] == OK) & (ended >= start) & (ended < end)).sum())
    little = little_ratio(users, len(main), seconds, main["latency_ms"])
    all_main = rows[rows["kind"] == "request"]
    gaps = completion_gaps(all_main, start if cell_start is None else cell_start, cell_end or end)
    # Requests that waited through the whole window: users the window's numbers never saw.
    stop = all_main["ts"] + all_main["latency_ms"] / 1000
    starved = int(((all_main["ts"] < start) & (stop >= end)).sum())
    return {
        "requests": len(main),
        "ok": ok,
        "errors": int(counts.get(ERROR, 0)),
        "timeouts": int(counts.get(TIMEOUT, 0)),
        "censored": int(counts.get(CENSORED, 0)),
        "failures": len(failed),
        "rps": ok / seconds if seconds > 0 else None,
        "served_rps": served / seconds if seconds > 0 else None,
        "latency_n": len(latency),
        "p50_ms": p50,
        "p90_ms": p90,
        "p95_ms": p95,
        "p99_ms": p99,
        "max_ms": pmax,
        "censored_min_ms": float(censored.min()) if len(censored) else None,
        "error_p50_ms": err_p50,
        "error_max_ms": err_max,
        "ttft_n": len(ttft),
        "ttft_p50_ms": ttft_p50,
        "ttft_p99_ms": ttft_p99,
        "itl_n": len(itl),
        "itl_p50_ms": itl_p50,
        "itl_p99_ms": itl_p99,
        "probe_requests": len(probe) if len(probe) else None,
        "probe_p50_ms": probe_p50,
        "probe_p99_ms": probe_p99,
        "probe_max_ms": probe_max,
        "overhead_n": len(overhead),
        "overhead_p50_ms": overhead_p50,
        "overhead_p99_ms": overhead_p99,
        "little_ratio": little,
        "steady": steadiness(little, users, len(main)),
        "starved": starved,
        "gap_max_s": gaps.longest_s,
        "gap_bounds": gaps.bounds,
        "gap_in_flight": gaps.in_flight,
        "gap_ended_by_errors": gaps.ended_by_errors,
        "since_last_completion_s": gaps.since_last_s,
        "in_flight_at_end": int((all_main["outcome"] == CENSORED).sum()),
    }


def open_loop_metrics(
    rows: pd.DataFrame, start: float, end: float, full_at: list[float] | None = None
) -> dict[str, Any]:
    """Rate mode: what the load generator sent in [start, end) against what its schedule held.

    Every arrival of the schedule has a row (`ts` its intended start; `lag_ms` empty if it was
    never sent), so the arrivals due in the window are counted exactly, Poisson variation and
    all; `sent` are the requests whose actual send fell in the window.
    """
    main = with_outcomes(rows)
    main = main[main["kind"] == "request"]
    lag = main["lag_ms"] if "lag_ms" in main else pd.Series(np.nan, index=main.index)
    sent_at = main["ts"] + lag / 1000
    sent = int((lag.notna() & (sent_at >= start) & (sent_at < end)).sum())
    due = (main["ts"] >= start) & (main["ts"] < end)
    seconds = end - start
    (lag_p99,) = percentiles(lag[due].dropna(), (99,))
    return {
        "scheduled": int(due.sum()),
        "sent": sent,
        "achieved_rps": sent / seconds if seconds > 0 else None,
        "send_lag_p99_ms": lag_p99,
        "slots_full": any(start <= t < end for t in full_at or []),
    }


def behind(open_loop: dict[str, Any] | None, loadgen_cpu_pct: float | None) -> str:
    """Why a rate cell's load generator fell behind its schedule ("" when it kept up).

    Short of the schedule while every connection waited on the server is the server's queue
    (the wait is in the latencies); short with a connection free, or with the load generator's
    core saturated, is the load side's own limit.
    """
    if not open_loop or not open_loop["scheduled"]:
        return ""
    sent, due = open_loop["sent"], open_loop["scheduled"]
    if sent >= (1 - RATE_TOLERANCE) * due:
        return ""
    saturated = loadgen_cpu_pct is not None and loadgen_cpu_pct > LOADGEN_MAX_PCT
    if open_loop["slots_full"] and not saturated:
        return ""
    return f"{LOADGEN_BEHIND}: sent {sent} of the {due} arrivals due in the window"


def steadiness(little: float | None, users: int | None, started: int) -> bool | None:
    """Little's law within tolerance; False when users were there and none started a request."""
    if little is None:
        return False if users and started == 0 else None
    return abs(little - 1) <= LITTLE_TOLERANCE


def little_ratio(
    users: int | None, started: int, seconds: float, latencies_ms: pd.Series
) -> float | None:
    """users / (arrival rate x mean latency): 1 in a closed loop's steady state (Little's law).

    Censored latencies are lower bounds, so a cell with many pushes the ratio above 1.
    """
    if not users or seconds <= 0:
        return None
    if started == 0:
        # Users in the system and none got a new request in: nothing flows. No ratio (JSON has
        # no infinity); `steadiness` says False for it.
        return None
    in_system = started / seconds * float(latencies_ms.mean()) / 1000
    return users / in_system if in_system > 0 else None


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
    open_loop: dict[str, Any] | None = None,
    db_cpu_pct: float | None = None,
    load_hosts: str | None = None,
) -> tuple[bool, str]:
    """Whether a cell's numbers describe the server rather than the load side; why not.

    PostgreSQL runs on the load core too: its CPU counts into that core's total. With load
    from other hosts, `loadgen_cpu_pct` is the busiest worker's and `load_hosts` the reason that
    names each saturated one ("" none): the load core here is then not the load generator's.
    """
    reasons = []
    if lagging := behind(open_loop, loadgen_cpu_pct):
        reasons.append(lagging)
    if loadgen_cpu_pct is None:
        reasons.append("load generator CPU not measured")
    elif load_hosts is not None:
        reasons.extend([load_hosts] if load_hosts else [])
    elif loadgen_cpu_pct > LOADGEN_MAX_PCT:
        reasons.append(f"load generator at {loadgen_cpu_pct:.0f}% of its core")
    if upstream_cpu_pct is not None and upstream_cpu_pct > LOADGEN_MAX_PCT:
        reasons.append(f"upstream at {upstream_cpu_pct:.0f}% of its core")
    others = [(upstream_cpu_pct, "upstream"), (db_cpu_pct, "PostgreSQL")]
    sharing = [(pct, name) for pct, name in others if pct is not None]
    if shared_load_core and load_hosts is None and loadgen_cpu_pct is not None and sharing:
        total = loadgen_cpu_pct + sum(pct for pct, _ in sharing)
        if total > LOAD_CORE_MAX_PCT:
            names = " + ".join(["Locust", *(name for _, name in sharing)])
            reasons.append(f"load core at {total:.0f}% ({names})")
    if spawned is None or spawned < target_users:
        reasons.append(f"reached {spawned or 0} of {target_users} users")
    return not reasons, "; ".join(reasons)


def summary_row(cell: CellResult | dict[str, Any]) -> dict[str, Any]:
    """One summary.csv row from a cell (its typed record, or cell.json's data), the sample rule
    applied (`contract.apply_sample_rule`: also to cells written before it was)."""
    if not isinstance(cell, CellResult):
        cell = CellResult.parse(cell)
    settings = cell.settings
    cpu = cell.cpu
    row: dict[str, Any] = {
        "scenario": cell.scenario,
        "variant": cell.variant,
        "client": cell.client,
        "users": cell.users,
        "repeat": cell.repeat,
        "offered_rps": cell.offered_rps,
        "arm": cell.arm,
        "db": cell.db,
        "server": cell.server,
        **cell.metrics.model_dump(),
        **cell.judged.model_dump(),
        "loadgen_cpu_pct": cpu.loadgen_pct,
        "upstream_cpu_pct": cpu.upstream_pct,
        "server_cpu_pct": cpu.server_pct,
        "db_cpu_pct": cpu.db_pct,
        "cut_off": cell.cut_off,
        "valid": cell.valid,
        "invalid_reason": cell.invalid_reason,
        "status": cell.status,
        "reason": cell.reason,
        "cell_id": cell.cell_id,
        "duration_s": settings.get("duration_s"),
        "warmup_s": settings.get("warmup_s"),
        "threadpool_tokens": settings.get("threadpool_tokens"),
        "db_pool_size": settings.get("db_pool_size"),
        "db_max_overflow": settings.get("db_max_overflow"),
        "observe": settings.get("observe", True),
        "upstream_latency_ms": settings.get("upstream_latency_ms"),
        **{k: getattr(cell.mechanisms, k, None) for k in MECHANISM_COLUMNS},
    }
    if cell.ok:
        row = apply_sample_rule(row)
    return {col: row.get(col) for col in SUMMARY_COLUMNS}


def write_summary(run_dir: Path, order: list[str] | None = None) -> Path:
    """Write summary.csv from every `<cell>/cell.json` of a run (in `order` of cell ids)."""
    cells = {p.parent.name: CellResult.load(p) for p in run_dir.glob("*/cell.json")}
    ids = [c for c in (order or []) if c in cells] + sorted(set(cells) - set(order or []))
    frame = pd.DataFrame.from_records([summary_row(cells[c]) for c in ids], columns=SUMMARY_COLUMNS)
    # Nullable ints, so an empty cell stays empty instead of turning the column into floats.
    frame = frame.astype(dict.fromkeys(INT_COLUMNS, "Int64"))
    path = run_dir / "summary.csv"
    write_atomic(path, frame.to_csv(index=False, float_format="%.3f"))
    return path


def rebuild_summary(run_dir: Path) -> Path:
    """Rewrite a run's summary.csv in today's columns, the sample rule applied.

    From its cells' cell.json when it has them (in summary.csv's own row order); a run kept as
    summary.csv alone (results/reference/slo/earlier-*) has each of its rows rewritten instead.
    No number is measured again: the rule only moves unsupported percentiles to `_raw`.
    """
    path = run_dir / "summary.csv"
    old = pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() else None
    order = list(old["cell_id"]) if old is not None else None
    if any(run_dir.glob("*/cell.json")):
        return write_summary(run_dir, order)
    if old is None:
        raise FileNotFoundError(f"{run_dir}: neither cells nor a summary.csv")
    rows = []
    for record in old.to_dict("records"):
        typed = {k: (None if v == "" else v) for k, v in record.items()}
        if typed.get("status") == "ok":
            for key in ("ok", "censored", "probe_requests"):
                if typed.get(key) is not None:
                    typed[key] = int(float(typed[key]))
            typed = apply_sample_rule(typed)
        rows.append({col: typed.get(col) for col in SUMMARY_COLUMNS})
    frame = pd.DataFrame.from_records(rows, columns=SUMMARY_COLUMNS)
    write_atomic(path, frame.to_csv(index=False))
    return path


if __name__ == "__main__":
    import sys

    for folder in sys.argv[1:]:
        print(f"rewrote {rebuild_summary(Path(folder))}")
