"""A tiny but realistic run folder, laid out as results/README.md says `loadtests` writes one."""

import csv
import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest

import contract
from loadtests.matrix import Cell as MatrixCell

USERS = (10, 50, 200)
REPEATS = (1, 2)
TOKENS = 40
CHAT_LATENCY_MS = 200.0  # ttft 50 + itl 10 x 15 tokens
INVALID_CELL = "chat__sync-httpx__u200__r2"
FAILED_CELL = "chat_stream__blocking-httpx__u200__r2"
SATURATED_CELL = "hello__async-none__u200__r1"

# (scenario, variant, client): the matrix of the default run, cut down.
CELLS: tuple[tuple[str, str, str], ...] = (
    ("hello", "sync", "-"),
    ("hello", "async", "-"),
    ("hello", "blocking", "-"),
    *(
        (scenario, variant, client)
        for scenario in ("chat", "chat_stream")
        for variant, client in (
            ("sync", "httpx"),
            ("async", "httpx"),
            ("async", "aiohttp"),
            ("blocking", "httpx"),
        )
    ),
    ("cpu", "sync", "-"),
    ("cpu", "async", "-"),
    ("mixed", "sync", "-"),
    ("mixed", "async", "-"),
    ("mixed", "blocking", "-"),
)

# The orchestrator's summary.csv: every contract column, in the contract's order.
SUMMARY_HEADER = list(contract.SUMMARY_COLUMNS)


def as_written(row: dict[str, object]) -> dict[str, object]:
    """A summary row as the orchestrator writes it (loadtests.summary.summary_row): in an ok cell
    `latency_n` the window's ok + censored requests unless the row says otherwise, and the
    contract's sample rule applied (`contract.apply_sample_rule`: a percentile its count does
    not support left empty, its value kept in `<column>_raw`)."""
    if row.get("status") != "ok":
        return row
    typed = {k: None if v == "" else v for k, v in row.items()}
    ruled = contract.apply_sample_rule(typed)
    return {k: "" if v is None else v for k, v in ruled.items()}


def write_summary(
    path: Path, rows: list[dict[str, object]], header: list[str] | None = None
) -> Path:
    """summary.csv of `rows` as the orchestrator writes them (as_written), in `header`'s columns
    (default: every contract column)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header or SUMMARY_HEADER, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(as_written(r) for r in rows)
    return path


def section_charts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports written in this test draw the sections' charts only: the per-scenario ones, the
    slow part of a report, are tested in test_analysis_report."""
    from analysis.report import render

    monkeypatch.setattr(render, "scenario_charts", lambda run, decided, out: ([], []))


def cell_record(row: dict[str, object], **extra: object) -> dict[str, object]:
    """A cell.json for a summary row: the fields `contract.cell.CellResult` requires, `extra`."""
    return {
        "cell_id": row["cell_id"],
        "scenario": row["scenario"],
        "variant": row["variant"],
        "client": row["client"],
        "arm": row.get("arm") or "",
        "users": int(str(row["users"])),
        "repeat": int(str(row["repeat"])),
        "status": row["status"],
        "valid": str(row.get("valid")) == "True",
        **extra,
    }


# Cells whose metrics.csv the fixture writes; the others have none, as a run from before issue 5.
METRICS_CELLS = frozenset(
    f"chat__{variant}-httpx__u200__r1" for variant in ("sync", "async", "blocking")
)
T0 = 1.7e9  # a cell's first scrape; the measured window is T0 + 3 .. T0 + 13
SWEEP_TOKENS = (10, 40, 100, 400)
MECHANISM_COLUMNS = [*contract.MECHANISM_COLUMNS, "overhead_p50_ms", "overhead_p99_ms"]
MECHANISM_COLUMNS.append("server_cpu_pct")
SWEEP_USERS = (50, 200)
SECRET = "sk-fixture-secret"
# The observer-effect arm: these cells again with the server's monitor off, 3% faster.
NOOBS = "noobs"
ARM_CELLS: tuple[tuple[str, str, str, int], ...] = (
    ("chat", "sync", "httpx", 50),
    ("chat", "async", "httpx", 50),
)
ARM_SPEEDUP = 1.03
UPSTREAM_DRIFT_MS = 1.5
# manifest.json `calibration`: before the run and after each pass, within 2% of each other.
CALIBRATION = [
    {"label": "before", "ts": 1795867200.0, "python_loop_per_s": 2.0e7, "asgi_hello_per_s": 9000.0},
    {
        "label": "after pass 1",
        "ts": 1795867800.0,
        "python_loop_per_s": 1.98e7,
        "asgi_hello_per_s": 8900.0,
    },
    {
        "label": "after pass 2",
        "ts": 1795868400.0,
        "python_loop_per_s": 2.02e7,
        "asgi_hello_per_s": 9050.0,
    },
]

_MATRIX_HAS_ARM = "arm" in {f.name for f in fields(MatrixCell)}


@dataclass(frozen=True)
class Cell(MatrixCell):
    """One cell x repeat of the fixture run, named exactly as the orchestrator names its cells."""

    if not _MATRIX_HAS_ARM:
        # Until loadtests.matrix.Cell has it: the arm goes into the id as `__<arm>` before `__r`.
        arm: str = ""

        @property
        def cell_id(self) -> str:
            base = super().cell_id
            if not self.arm:
                return base
            head, _, repeat = base.rpartition("__r")
            return f"{head}__{self.arm}__r{repeat}"

    @property
    def io(self) -> bool:
        return self.scenario in ("chat", "chat_stream", "mixed")


def expected_rps(scenario: str, variant: str, client: str, users: int) -> float:
    """Throughput shaped like MEASURED.md's figures on a 2-core machine."""
    ideal = users / (CHAT_LATENCY_MS / 1000)
    if scenario == "hello":
        return 4600.0 if variant == "sync" else 8000.0
    if scenario == "cpu":
        return 390.0
    if variant == "blocking":
        return 1000 / CHAT_LATENCY_MS * 0.97
    if variant == "sync":
        return min(0.95 * ideal, TOKENS / (CHAT_LATENCY_MS / 1000) * 0.95)
    if client == "httpx":
        return min(0.95 * ideal, 150.0)
    return 0.93 * ideal


def summary_row(cell: Cell) -> dict[str, object]:
    """One summary.csv row with numbers consistent with Little's law."""
    jitter = 0.98 if cell.repeat == 1 else 1.02
    rps = expected_rps(cell.scenario, cell.variant, cell.client, cell.users) * jitter
    if cell.arm:
        rps *= ARM_SPEEDUP
    mean_ms = cell.users / rps * 1000
    requests = round(rps * 10)
    server_cpu = 100.0 if cell.scenario in ("hello", "cpu") else 60.0
    row: dict[str, object] = dict.fromkeys(SUMMARY_HEADER, "")
    row.update(
        scenario=cell.scenario,
        variant=cell.variant,
        client=cell.client,
        arm=cell.arm,
        users=cell.users,
        repeat=cell.repeat,
        requests=requests,
        ok=requests,
        errors=0,
        timeouts=0,
        censored=0,
        failures=0,
        little_ratio=0.99 if cell.repeat == 1 else 1.01,
        steady=True,
        gap_max_s=round(mean_ms * 3.5 / 1000, 3),
        stalled=False,
        cpu_ms_per_req=round(server_cpu * 10 / rps, 4),
        observe=not cell.arm,
        rps=round(rps, 2),
        p50_ms=round(mean_ms * 0.95, 2),
        p90_ms=round(mean_ms * 1.3, 2),
        p95_ms=round(mean_ms * 1.5, 2),
        p99_ms=round(
            mean_ms * (3.0 if cell.variant == "async" and cell.scenario == "cpu" else 2.0), 2
        ),
        max_ms=round(mean_ms * 3.5, 2),
        loadgen_cpu_pct=96.0 if cell.cell_id == SATURATED_CELL else 55.0,
        upstream_cpu_pct=30.0 if cell.io else "",
        server_cpu_pct=server_cpu,
        cut_off=0,
        valid=True,
        status="ok",
        cell_id=cell.cell_id,
        duration_s=10.0,
        warmup_s=3.0,
        threadpool_tokens=cell.tokens or TOKENS,
        upstream_latency_ms=CHAT_LATENCY_MS if cell.io else "",
        upstream_served_ms=CHAT_LATENCY_MS + UPSTREAM_DRIFT_MS if cell.io else "",
        upstream_drift_ms=UPSTREAM_DRIFT_MS if cell.io else "",
    )
    blocked = cell.variant == "blocking" and cell.io
    row.update(
        loop_lag_max_ms=CHAT_LATENCY_MS * 1.5 if blocked else 4.0,
        loop_lag_p99_ms=CHAT_LATENCY_MS if blocked else 2.0,
        threadpool_peak_in_use=min(cell.users, TOKENS) if cell.variant == "sync" else 0,
        threadpool_peak_waiting=max(cell.users - TOKENS, 0) if cell.variant == "sync" else 0,
        http_pool_peak_active=min(cell.users, 100) if cell.io else "",
        http_pool_peak_waiting=max(cell.users - 100, 0) if cell.io else "",
        server_rss_peak_mb=80.5,
    )
    if cell.io:
        # `def` queues for a thread beyond the token count; the others add well under 1 ms.
        queued = max(cell.users - TOKENS, 0) * 0.2 if cell.variant == "sync" else 0.0
        base = {"sync": 1.5, "async": 0.8, "blocking": 0.4}[cell.variant]
        row.update(overhead_p50_ms=base + queued / 2, overhead_p99_ms=base * 3 + queued)
    if cell.scenario == "chat_stream":
        ttft = 50.0 if cell.variant != "blocking" else 50.0 * cell.users
        row.update(ttft_p50_ms=ttft, ttft_p99_ms=ttft * 2, itl_p50_ms=10.5, itl_p99_ms=25.0)
    if cell.scenario == "mixed":
        probe = 1000.0 if cell.variant == "blocking" else (3.0 if cell.variant == "async" else 6.0)
        row.update(
            probe_requests=500, probe_p50_ms=probe / 2, probe_p99_ms=probe, probe_max_ms=probe * 2
        )
    if cell.cell_id == INVALID_CELL:
        row.update(valid=False, invalid_reason="load generator above 90% CPU", loadgen_cpu_pct=99.0)
    if cell.cell_id == FAILED_CELL:
        row.update(
            dict.fromkeys(
                ("requests", "ok", "failures", "rps", "p50_ms", "p99_ms", "p90_ms", "little_ratio"),
                "",
            ),
            valid=False,
            status="failed",
            reason="server did not answer /health within 30 s",
        )
    return row


def write_metrics(path: Path, variant: str, users: int) -> None:
    """A metrics.csv shaped like loadtests.scrape writes it: 15 scrapes, one a second."""
    rows: list[tuple[float, str, str, float]] = []
    for i in range(15):
        ts = T0 + 1 + i
        loaded = 3 <= i <= 12  # the window; load ramps up before and drains after
        busy = users if loaded else (users // 4 if i < 3 else 0)
        if variant == "sync":
            in_use, waiting = min(busy, TOKENS), max(busy - TOKENS - (i % 3) * 7, 0)
        else:
            in_use, waiting = 0, 0
        lag = CHAT_LATENCY_MS * (1 + i % 2) if variant == "blocking" and busy else 3.0
        rows += [
            (ts, "lab_threadpool_tokens_total", "", float(TOKENS)),
            (ts, "lab_threadpool_tokens_in_use", "", float(in_use)),
            (ts, "lab_threadpool_waiting", "", float(waiting)),
            (ts, "lab_event_loop_lag_max_seconds", "", lag / 1000),
            (ts, "lab_event_loop_lag_seconds_bucket", "le=0.01", float(i * 90)),
            (ts, "lab_event_loop_lag_seconds_bucket", "le=+Inf", float(i * 100)),
            (ts, "lab_http_pool_connections", "state=active", float(min(busy, 100))),
            (ts, "lab_http_pool_connections", "state=waiting", float(max(busy - 100, 0))),
            (ts, "process_cpu_seconds_total", "", 0.6 * i),
            (ts, "process_resident_memory_bytes", "", 80.5 * 2**20),
            (ts, "cpu_seconds_total", "process=loadgen", 0.55 * i),
            (ts, "cpu_seconds_total", "process=server", 0.6 * i),
        ]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ts", "metric", "labels", "value"])
        writer.writerows((f"{ts:.3f}", m, lab, repr(v)) for ts, m, lab, v in rows)


def write_requests(path: Path, row: dict[str, object], rng: np.random.Generator) -> None:
    """A requests.csv whose latencies spread around the row's p50."""
    n = 300
    p50 = float(row["p50_ms"])
    rows: list[tuple[float, str, str, float, int]] = []
    latencies = rng.lognormal(np.log(p50), 0.35, n)
    # Inside the cell's window (T0 + 3 .. T0 + 13), as the charts read only the window's rows.
    rows += [(T0 + 3 + i / 100, "request", "GET /x", lat, 1) for i, lat in enumerate(latencies)]
    if row["scenario"] == "chat_stream":
        ttft = rng.lognormal(np.log(float(row["ttft_p50_ms"])), 0.3, n)
        itl = rng.lognormal(np.log(float(row["itl_p50_ms"])), 0.3, n * 3)
        rows += [(1.7e9, "ttft", "POST /v1/chat/completions", v, 1) for v in ttft]
        rows += [(1.7e9, "itl", "POST /v1/chat/completions", v, 1) for v in itl]
    if row["scenario"] == "mixed":
        probe = rng.lognormal(np.log(float(row["probe_p50_ms"])), 0.5, n)
        rows += [(1.7e9, "probe", "GET /hello", v, 1) for v in probe]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ts", "kind", "name", "latency_ms", "ok"])
        writer.writerows((f"{ts:.3f}", k, n_, f"{lat:.3f}", ok) for ts, k, n_, lat, ok in rows)


# Shaped like loadtests.manifest.start() writes it, plus a key a newer orchestrator might add.
MANIFEST: dict[str, object] = {
    "run_id": "fixture-run",
    "start": 1795867200.0,
    "end": 1795868400.0,
    "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
    "versions": {"fastapi": "0.165.0", "starlette": "1.10.0", "uvicorn": "0.54.0", "uvloop": None},
    "machine": {
        "cpu_model": "Fixture CPU @ 2.0GHz",
        "cpu_count": 2,
        "affinity": [0, 1],
        "platform": "Linux-6.1-x86_64",
        "loadavg": [0.5, 0.4, 0.3],
        "python": "3.11.7 (main, Dec  1 2023)\n[GCC 12.2.0]",
    },
    "pinning": {"server": [1], "loadgen": [0], "upstream": [0], "available": [0, 1]},
    "target": "127.0.0.1",
    "locust_processes": 1,
    "matrix": {"users": list(USERS), "repeats": len(REPEATS), "ttft_ms": 50, "itl_ms": 10},
    "cells": [f"cell-{i}" for i in range(40)],
    "server_settings": {
        "upstream_api_key": SECRET,
        "http_max_connections": 100,
        "threadpool_tokens": TOKENS,
        "db_pool_size": 5,
    },
    "sessions": [{"start": 1795867200.0, "end": 1795868400.0, "cells_planned": 40}],
    "calibration": CALIBRATION,
    "extra_key_from_a_newer_orchestrator": {"anything": True},
}


def write_manifest(run: Path, manifest: dict[str, object]) -> None:
    """Write `manifest` with `cells` planned as the ids its summary.csv holds (a complete run)."""
    summary = run / "summary.csv"
    if summary.exists():
        with summary.open(newline="") as f:
            manifest = {**manifest, "cells": [row["cell_id"] for row in csv.DictReader(f)]}
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))


def write_run(root: Path, *, raw: bool = True, seed: int = 7) -> Path:
    """Write the fixture run under `root/fixture-run` and return its folder."""
    run = root / "fixture-run"
    run.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = [summary_row(Cell(s, v, c, u, r)) for s, v, c in CELLS for u in USERS for r in REPEATS]
    rows += [
        summary_row(Cell(s, v, c, u, r, arm=NOOBS)) for s, v, c, u in ARM_CELLS for r in REPEATS
    ]
    write_summary(run / "summary.csv", rows)
    write_manifest(run, MANIFEST)
    for row in rows:
        cell_dir = run / str(row["cell_id"])
        cell_dir.mkdir()
        cell = cell_record(row, window_start=T0 + 3, window_end=T0 + 13)
        (cell_dir / "cell.json").write_text(json.dumps(cell))
        if raw and row["status"] == "ok":
            write_requests(cell_dir / "requests.csv", row, rng)
        if row["cell_id"] in METRICS_CELLS:
            write_metrics(cell_dir / "metrics.csv", str(row["variant"]), int(str(row["users"])))
    return run


def sweep_rps(variant: str, users: int, tokens: int) -> float:
    """`def` grows with tokens up to users / latency, minus a contention cost of many threads."""
    ideal = users / (CHAT_LATENCY_MS / 1000)
    if variant == "async":
        return 0.9 * ideal
    return min(0.95 * ideal, tokens / (CHAT_LATENCY_MS / 1000) * 0.95) / (1 + tokens / 800)


def write_sweep_run(root: Path, *, mechanism: bool = True) -> Path:
    """A token-sweep run: `chat`, `sync` at SWEEP_TOKENS, `async` at the default tokens only."""
    run = root / "sweep-run"
    run.mkdir(parents=True)
    cells = [
        Cell("chat", "sync", "httpx", u, r, t)
        for t in SWEEP_TOKENS
        for u in SWEEP_USERS
        for r in REPEATS
    ] + [Cell("chat", "async", "httpx", u, r, TOKENS) for u in SWEEP_USERS for r in REPEATS]
    rows = []
    for cell in cells:
        row = summary_row(cell)
        tokens = cell.tokens or TOKENS
        rps = sweep_rps(cell.variant, cell.users, tokens) * (0.98 if cell.repeat == 1 else 1.02)
        mean_ms = cell.users / rps * 1000
        busy = cell.variant == "sync"
        row.update(
            rps=round(rps, 2),
            p50_ms=round(mean_ms * 0.95, 2),
            p99_ms=round(mean_ms * 2, 2),
            threadpool_peak_in_use=min(cell.users, tokens) if busy else 0,
            threadpool_peak_waiting=max(cell.users - tokens, 0) if busy else 0,
        )
        if not mechanism:
            # As a run from before /metrics: no mechanism charts, the why column says so.
            row.update(dict.fromkeys(MECHANISM_COLUMNS, ""))
        rows.append(row)
    write_summary(run / "summary.csv", rows)
    manifest = {**MANIFEST, "run_id": "sweep-run", "matrix": {"threadpool_tokens": SWEEP_TOKENS}}
    write_manifest(run, manifest)
    for row in rows:
        (run / str(row["cell_id"])).mkdir()
    return run


# --- `make bench-stalls` (issue 9): `def` stalls and the fixes as arms of `sync` ------------------
STALL_USERS = (50, 200, 400)
STALL_STREAM_USERS = (200, 400)
# What one cell did: ("ok" | "deadlock" | "stall", requests/s).
StallPlan = dict[tuple[str, str, str, str], dict[int, tuple[str, float]]]
DB_DIAGNOSIS = (
    "every worker waits for a pooled connection: 40 of 48 waits for a DB connection "
    "(SQLAlchemy QueuePool); 8 idle (after 5.1 s without a completion, 200 in flight)"
)
STREAM_DIAGNOSIS = (
    "a thread waits on a lock it holds: 1 of 48 in httpcore's pool lock (encode/httpcore#990); "
    "39 wait for a thread token (after 5.0 s without a completion, 400 in flight)"
)


def _items_plan(scenario: str) -> StallPlan:
    fine = {u: ("ok", rps) for u, rps in zip(STALL_USERS, (600.0, 650.0, 640.0), strict=True)}
    plan: StallPlan = {
        (scenario, "sync", "-", ""): {
            50: ("ok", 500.0),
            200: ("deadlock", 30.0),
            400: ("deadlock", 12.0),
        },
        (scenario, "async", "-", ""): {
            50: ("ok", 1400.0),
            200: ("ok", 1500.0),
            400: ("ok", 1450.0),
        },
        (scenario, "sync", "-", "db_scope_function"): {
            50: ("ok", 520.0),
            200: ("ok", 540.0),
            400: ("deadlock", 20.0),
        },
        (scenario, "sync", "-", "db_pool_40"): {
            50: ("ok", 700.0),
            200: ("ok", 720.0),
            400: ("stall", 300.0),
        },
        (scenario, "sync", "-", "db_session_in_endpoint"): {
            u: ("ok", rps) for u, rps in zip(STALL_USERS, (880.0, 900.0, 890.0), strict=True)
        },
        (scenario, "sync", "-", "db_max_concurrency"): {
            u: ("ok", rps) for u, rps in zip(STALL_USERS, (1000.0, 1100.0, 1080.0), strict=True)
        },
        (scenario, "sync", "-", "fastapi_overflow"): fine,
    }
    return plan


def stall_plan() -> StallPlan:
    """The run stalls.toml describes, shaped like its expected outcome."""
    plan: StallPlan = {**_items_plan("items_read"), **_items_plan("items_write")}
    clean = dict.fromkeys(STALL_STREAM_USERS, ("ok", 3000.0))
    plan.update(
        {
            ("chat_stream", "sync", "httpx", ""): {200: ("ok", 2500.0), 400: ("deadlock", 40.0)},
            ("chat_stream", "sync", "httpx2", ""): {200: ("ok", 2600.0), 400: ("ok", 2700.0)},
            ("chat_stream", "async", "aiohttp", ""): {200: ("ok", 4000.0), 400: ("ok", 4200.0)},
            ("chat_stream", "sync", "httpx", "stream_close_response"): {
                200: ("ok", 2550.0),
                400: ("stall", 900.0),
            },
            ("chat_stream", "sync", "httpx", "stream_max_concurrency"): clean,
            ("chat_stream", "sync", "httpx", "stream_pool_20"): {
                200: ("ok", 2000.0),
                400: ("ok", 2100.0),
            },
        }
    )
    return plan


def stall_rows(plan: StallPlan | None = None, repeats: tuple[int, ...] = (1,)) -> list[dict]:
    """summary.csv rows of a stalls run: deadlocked cells `stalled`, stalls with a 10 s gap ended
    by pool-timeout errors, the thread diagnosis on both."""
    rows = []
    for (scenario, variant, client, arm), cells in (plan or stall_plan()).items():
        for users, (outcome, rps) in cells.items():
            for repeat in repeats:
                row = summary_row(Cell(scenario, variant, client, users, repeat, arm=arm))
                mean_ms = users / rps * 1000
                requests = round(rps * 2)
                row.update(
                    observe=True,
                    rps=rps,
                    requests=requests,
                    ok=requests,
                    p50_ms=round(mean_ms * 0.9, 2),
                    p90_ms=round(mean_ms * 1.3, 2),
                    p95_ms=round(mean_ms * 1.5, 2),
                    p99_ms=round(mean_ms * 2, 2),
                    max_ms=round(mean_ms * 3, 2),
                    gap_max_s=0.2,
                    threadpool_tokens=TOKENS,
                    upstream_latency_ms=90.0 if scenario == "chat_stream" else "",
                )
                diagnosis = STREAM_DIAGNOSIS if scenario == "chat_stream" else DB_DIAGNOSIS
                if outcome == "deadlock":
                    row.update(
                        stalled=True,
                        steady=False,
                        gap_max_s=12.4,
                        censored=users,
                        requests=requests + users,
                        censored_min_ms=12_000.0,
                        p99_ms=13_000.0,
                        max_ms=14_000.0,
                        stall_evidence=f"12.4 s without a completion, {users} in flight",
                        threads=diagnosis,
                    )
                elif outcome == "stall":
                    row.update(
                        gap_max_s=10.3,
                        errors=57,
                        failures=57,
                        requests=requests + 57,
                        error_p50_ms=10_004.0,
                        stall_evidence=f"10.3 s without a completion, {users} in flight",
                        threads=diagnosis,
                    )
                rows.append(row)
    return rows


STALL_MANIFEST_ARMS = [
    {"name": "db_max_concurrency", "env": {"db_max_concurrency": 15}},
    {"name": "fastapi_overflow", "env": {"fastapi_overflow": True}},
    {"name": "stream_close_response", "env": {"stream_close": "response"}},
]


def write_stalls_run(root: Path, rows: list[dict] | None = None, name: str = "stalls-run") -> Path:
    """A run folder of `make bench-stalls` (summary and manifest, no raw files)."""
    run = root / name
    run.mkdir(parents=True)
    rows = stall_rows() if rows is None else rows
    write_summary(run / "summary.csv", rows)
    matrix = {"users": list(STALL_USERS), "arms": STALL_MANIFEST_ARMS}
    manifest = {**MANIFEST, "run_id": name, "matrix": matrix}
    write_manifest(run, manifest)
    for row in rows:
        (run / str(row["cell_id"])).mkdir()
    return run


# --- the threadpool sweep over several scenarios (threadpool.toml with items_read/items_write) ---
MULTI_SWEEP_SCENARIOS: tuple[tuple[str, str], ...] = (
    ("chat", "httpx"),
    ("items_read", "-"),
    ("items_write", "-"),
)
# (scenario, users, tokens): `def` deadlocked there (a pool of 5 behind 10 threads, say).
MULTI_SWEEP_STALLED = frozenset({("items_read", 200, 10)})


def write_multi_sweep_run(root: Path) -> Path:
    """A token sweep of `chat`, `items_read` and `items_write`: `sync` at SWEEP_TOKENS, `async`
    at the default tokens as the reference; items run twice as fast as chat."""
    run = root / "multi-sweep-run"
    run.mkdir(parents=True)
    rows = []
    for scenario, client in MULTI_SWEEP_SCENARIOS:
        cells = [
            Cell(scenario, "sync", client, u, r, t)
            for t in SWEEP_TOKENS
            for u in SWEEP_USERS
            for r in REPEATS
        ] + [Cell(scenario, "async", client, u, r, TOKENS) for u in SWEEP_USERS for r in REPEATS]
        speed = 1.0 if scenario == "chat" else 2.0
        for cell in cells:
            row = summary_row(cell)
            tokens = cell.tokens or TOKENS
            rps = sweep_rps(cell.variant, cell.users, tokens) * speed
            rps *= 0.98 if cell.repeat == 1 else 1.02
            mean_ms = cell.users / rps * 1000
            row.update(
                rps=round(rps, 2),
                p50_ms=round(mean_ms * 0.95, 2),
                p99_ms=round(mean_ms * 2, 2),
                upstream_latency_ms=CHAT_LATENCY_MS if scenario == "chat" else "",
            )
            if cell.variant == "sync" and (scenario, cell.users, tokens) in MULTI_SWEEP_STALLED:
                row.update(stalled=True, steady=False, gap_max_s=12.5, rps=1.0)
            rows.append(row)
    write_summary(run / "summary.csv", rows)
    manifest = {
        **MANIFEST,
        "run_id": "multi-sweep-run",
        "matrix": {"threadpool_tokens": SWEEP_TOKENS},
    }
    write_manifest(run, manifest)
    for row in rows:
        (run / str(row["cell_id"])).mkdir()
    return run


# --- `make bench-clients` (issue 11): each handler style with each HTTP client --------------------
CLIENTS_USERS = 200
# (scenario, variant, client, arm) -> req/s of each repeat (clients.toml: 3 repeats at 200 users).
ClientPlan = dict[tuple[str, str, str, str], tuple[float, ...]]


def client_plan() -> ClientPlan:
    """The run clients.toml describes: `def` with httpx and httpx2 (on chat_stream in the
    `stream_fix` arm), `async def` with httpx, httpx2 and aiohttp; httpx2 beyond the noise for
    `async def` on chat, within it for `def`."""
    plan: ClientPlan = {}
    for scenario in ("chat", "chat_stream", "mixed"):
        arm = "stream_fix" if scenario == "chat_stream" else ""
        plan[(scenario, "sync", "httpx", arm)] = (180.0, 190.0, 200.0)
        plan[(scenario, "sync", "httpx2", arm)] = (182.0, 192.0, 201.0)
        plan[(scenario, "async", "httpx", "")] = (150.0, 155.0, 160.0)
        plan[(scenario, "async", "httpx2", "")] = (600.0, 620.0, 640.0)
        plan[(scenario, "async", "aiohttp", "")] = (880.0, 900.0, 930.0)
    return plan


def clients_run_rows(plan: ClientPlan | None = None, users: int = CLIENTS_USERS) -> list[dict]:
    """summary.csv rows of a clients run: Little's law holds, CPU per request 600 / rps ms."""
    rows = []
    for (scenario, variant, client, arm), values in (plan or client_plan()).items():
        for repeat, rps in enumerate(values, start=1):
            row = summary_row(Cell(scenario, variant, client, users, repeat, arm=arm))
            mean_ms = users / rps * 1000
            requests = round(rps * 10)
            row.update(
                observe=True,
                rps=rps,
                requests=requests,
                ok=requests,
                p50_ms=round(mean_ms * 0.95, 2),
                p90_ms=round(mean_ms * 1.3, 2),
                p95_ms=round(mean_ms * 1.5, 2),
                p99_ms=round(mean_ms * 2, 2),
                max_ms=round(mean_ms * 3, 2),
                cpu_ms_per_req=round(600.0 / rps, 4),
                threadpool_tokens=TOKENS,
                # Clean unless a test says otherwise (summary_row marks one chat cell invalid).
                valid=True,
                invalid_reason="",
                loadgen_cpu_pct=55.0,
            )
            rows.append(row)
    return rows


CLIENT_MANIFEST_ARMS = [
    {"name": "stream_fix", "env": {"http_max_concurrency": 30, "stream_close": "response"}}
]


def write_clients_run(
    root: Path, rows: list[dict] | None = None, name: str = "clients-run"
) -> Path:
    """A run folder of `make bench-clients` (summary and manifest, no raw files)."""
    run = root / name
    run.mkdir(parents=True)
    rows = clients_run_rows() if rows is None else rows
    write_summary(run / "summary.csv", rows)
    matrix = {"users": [CLIENTS_USERS], "repeats": 3, "arms": CLIENT_MANIFEST_ARMS}
    manifest = {**MANIFEST, "run_id": name, "matrix": matrix}
    write_manifest(run, manifest)
    for row in rows:
        (run / str(row["cell_id"])).mkdir()
    return run


# --- rate mode (issue 10): open-loop cells at offered rates, and an SLO capacity search -----------
RATES = (100, 200, 400, 800)
# The connection cap of a rate cell: `users` in summary.csv, on purpose one of USERS (a closed-loop
# cell has the same scenario, variant, client and users: only `offered_rps` tells them apart).
RATE_SLOTS = 50
SLO_TEXT = "p99=500ms,errors=1%"
# (variant, client) -> the highest rate that meets the SLO (0: none; the lowest stalls).
RATE_CAPACITY: dict[tuple[str, str], int] = {
    ("sync", "httpx"): 200,
    ("async", "httpx"): 400,
    ("async", "aiohttp"): 800,
    ("blocking", "httpx"): 0,
}
RATE_SPEC = {
    "rates": list(RATES),
    "slo": SLO_TEXT,
    "arrivals": "poisson",
    "rate_slots": RATE_SLOTS,
    "bisect_steps": 0,
}


def rate_cell_id(variant: str, client: str, offered: int, repeat: int, arm: str = "") -> str:
    """`chat__sync-httpx__rps0400__r1`, `__<arm>` before `__r` in an arm."""
    arm_part = f"__{arm}" if arm else ""
    return f"chat__{variant}-{client}__rps{offered:04d}{arm_part}__r{repeat}"


def rate_row(variant: str, client: str, offered: int, repeat: int) -> dict[str, object]:
    """One rate cell on `chat`: within its capacity p99 200-400 ms, above it the queue grows
    (p99 in seconds, slots full) and the server serves little more than its capacity while
    `rps` (arrivals answered ok, some in the drain) looks higher; `blocking` stalls at every
    rate."""
    row = summary_row(Cell("chat", variant, client, RATE_SLOTS, repeat))
    cap = RATE_CAPACITY[(variant, client)]
    jitter = 0.98 if repeat == 1 else 1.02
    requests = offered * 10
    meets = offered <= cap
    p99 = (CHAT_LATENCY_MS + offered / 4) * jitter if meets else 500.0 * offered / max(cap, 50)
    row.update(
        offered_rps=float(offered),
        achieved_rps=round(offered * (0.99 if meets else 0.9), 2),
        send_lag_p99_ms=2.0 if meets else 300.0,
        slots_full=not meets,
        rps=round(offered * (0.99 if meets else 0.6), 2),
        served_rps=round(offered * 0.98 if meets else max(cap, 50) * 1.1, 2),
        requests=requests,
        ok=requests,
        p50_ms=round(CHAT_LATENCY_MS * (1.05 if meets else 3.0), 2),
        p90_ms=round(p99 * 0.8, 2),
        p95_ms=round(p99 * 0.9, 2),
        p99_ms=round(p99, 2),
        max_ms=round(p99 * 1.5, 2),
        little_ratio="",
        steady="",
        cell_id=rate_cell_id(variant, client, offered, repeat),
    )
    if cap == 0:
        row.update(
            stalled=True,
            rps=1.0,
            served_rps=1.0,
            censored=RATE_SLOTS,
            stall_evidence=f"12.0 s without a completion, {RATE_SLOTS} in flight",
        )
    return row


def rate_rows(repeats: tuple[int, ...] = REPEATS) -> list[dict[str, object]]:
    """Every (variant, client) of RATE_CAPACITY at every rate of RATES, each repeat."""
    return [
        rate_row(variant, client, offered, repeat)
        for (variant, client) in RATE_CAPACITY
        for offered in RATES
        for repeat in repeats
    ]


def capacity_rows(repeats: tuple[int, ...] = REPEATS) -> list[dict[str, object]]:
    """capacity.csv as the orchestrator writes it for rate_rows (a search over RATES)."""
    rows = []
    for (variant, client), cap in RATE_CAPACITY.items():
        for repeat in repeats:
            tried = [r for r in RATES if r <= cap] + [r for r in RATES if r > cap][:1]
            limit = next((r for r in RATES if r > cap), None)
            if cap == 0:
                bound, reason = "below_lowest", "stalled"
            elif limit is None:
                bound, reason = "above_highest", ""
            else:
                bound = "bracketed"
                p99 = 500.0 * limit / max(cap, 50)
                reason = f"p99 {p99:.0f} ms > 500 ms"
            at_cap = (CHAT_LATENCY_MS + cap / 4) * (0.98 if repeat == 1 else 1.02) if cap else ""
            rows.append(
                {
                    "scenario": "chat",
                    "variant": variant,
                    "client": client,
                    "arm": "",
                    "repeat": repeat,
                    "slo": SLO_TEXT,
                    "capacity_rps": float(cap) if cap else "",
                    "limit_rps": float(limit) if limit else "",
                    "bound": bound,
                    "limit_reason": reason,
                    "p99_at_capacity_ms": round(at_cap, 2) if at_cap else "",
                    "cells": len(tried),
                    "cell_ids": " ".join(rate_cell_id(variant, client, r, repeat) for r in tried),
                }
            )
    return rows


def write_rate_run(
    root: Path,
    *,
    closed: bool = True,
    rates: bool = True,
    capacity: bool = True,
    slo: str = SLO_TEXT,
    name: str = "rate-run",
    spec: bool | None = None,
) -> Path:
    """A run folder with closed-loop `chat` cells (USERS x REPEATS), rate cells and capacity.csv,
    each part optional (summary and manifest, no raw files); the manifest has `matrix` when `spec`
    says so (default: when the run has rate cells)."""
    run = root / name
    run.mkdir(parents=True)
    rows: list[dict[str, object]] = []
    if closed:
        rows += [
            summary_row(Cell(s, v, c, u, r))
            for s, v, c in CELLS
            if s == "chat"
            for u in USERS
            for r in REPEATS
        ]
    if rates:
        rows += rate_rows()
    write_summary(run / "summary.csv", rows)
    if capacity:
        with (run / "capacity.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(contract.CAPACITY_COLUMNS))
            writer.writeheader()
            writer.writerows(capacity_rows())
    with_spec = rates if spec is None else spec
    manifest = {**MANIFEST, "run_id": name}
    if with_spec:
        manifest["matrix"] = {**RATE_SPEC, "slo": slo}
    write_manifest(run, manifest)
    for row in rows:
        (run / str(row["cell_id"])).mkdir()
    return run


# --- `make bench-pg`: the DB scenarios on SQLite (base cells) and PostgreSQL (named arms) ---------
DB_USERS = 200
DB_WAIT_MS = 20
# (scenario, variant, arm, db, pool size, max overflow) -> each repeat: req/s, or what went wrong
# ("deadlock": `stalled`; "stall": a 10.3 s gap ended by pool-timeout errors, not steady;
# "invalid": the load side saturated, with a fast-looking 5,000 req/s that must never show).
DbPlan = dict[tuple[str, str, str, str, int, int], tuple[float | str, ...]]
DB_STALL_RPS = 3.0
DB_INVALID_RPS = 5000.0
DB_ARMS: tuple[tuple[str, str], ...] = (
    ("pg", "db_url = lab"),
    ("pg_asyncpg", "db_url = lab, db_async_driver = asyncpg"),
    ("pg_pool40", "db_url = lab, db_pool_size = 40, db_max_overflow = 0"),
    ("pg_asyncpg_pool40", "db_url = lab, db_async_driver = asyncpg, db_pool_size = 40"),
)


def db_plan() -> DbPlan:
    """postgres.toml's run, shaped so that: on `items_read` `async def` + sync lib leads on
    SQLite and `def` with a 40-connection pool on PostgreSQL (the verdict changes); on
    `items_wait` `async def` leads on both (it does not); on `items_write` every style is within
    the noise on both (no clear leader either side: no change)."""
    lite, aio, pg, apg = (
        "sqlite+pysqlite",
        "sqlite+aiosqlite",
        "postgresql+psycopg",
        "postgresql+asyncpg",
    )
    return {
        ("items_read", "sync", "", lite, 5, 10): ("stall", "stall"),
        ("items_read", "async", "", aio, 5, 10): (1000.0, 1040.0),
        ("items_read", "blocking", "", lite, 5, 10): (2600.0, 2700.0),
        ("items_read", "sync", "pg", pg, 5, 10): ("deadlock", "deadlock"),
        ("items_read", "async", "pg", pg, 5, 10): (900.0, 950.0),
        ("items_read", "blocking", "pg", pg, 5, 10): (600.0, "stall"),
        ("items_read", "async", "pg_asyncpg", apg, 5, 10): (1200.0, 1250.0),
        ("items_read", "sync", "pg_pool40", pg, 40, 0): (1500.0, 1560.0),
        ("items_read", "async", "pg_pool40", pg, 40, 0): (950.0, 980.0),
        ("items_read", "async", "pg_asyncpg_pool40", apg, 40, 0): (1300.0, 1350.0),
        ("items_wait", "sync", "", lite, 5, 10): ("stall", "stall"),
        ("items_wait", "async", "", aio, 5, 10): (440.0, 450.0),
        ("items_wait", "blocking", "", lite, 5, 10): (40.0, 42.0),
        ("items_wait", "sync", "pg", pg, 5, 10): ("deadlock", "deadlock"),
        ("items_wait", "async", "pg", pg, 5, 10): (470.0, 480.0),
        ("items_wait", "blocking", "pg", pg, 5, 10): (40.0, 41.0),
        ("items_wait", "async", "pg_asyncpg", apg, 5, 10): (540.0, 550.0),
        ("items_wait", "sync", "pg_pool40", pg, 40, 0): (1500.0, 1520.0),
        ("items_wait", "async", "pg_pool40", pg, 40, 0): (1700.0, 1750.0),
        ("items_wait", "async", "pg_asyncpg_pool40", apg, 40, 0): (1900.0, 1950.0),
        ("items_write", "sync", "", lite, 5, 10): (700.0, 720.0),
        ("items_write", "async", "", aio, 5, 10): (710.0, 730.0),
        ("items_write", "blocking", "", lite, 5, 10): (690.0, 740.0),
        ("items_write", "sync", "pg", pg, 5, 10): (720.0, 740.0),
        ("items_write", "async", "pg", pg, 5, 10): (730.0, 745.0),
        ("items_write", "blocking", "pg", pg, 5, 10): ("invalid", "invalid"),
        ("items_write", "async", "pg_asyncpg", apg, 5, 10): (725.0, 735.0),
        ("items_write", "sync", "pg_pool40", pg, 40, 0): (735.0, 745.0),
        ("items_write", "async", "pg_pool40", pg, 40, 0): (730.0, 750.0),
        ("items_write", "async", "pg_asyncpg_pool40", apg, 40, 0): (740.0, 742.0),
    }


def db_run_rows(plan: DbPlan | None = None, users: int = DB_USERS) -> list[dict]:
    """summary.csv rows of a bench-pg run: Little's law holds in the counted cells; PostgreSQL's
    CPU rps / 20 % of a core on PostgreSQL cells, empty on SQLite."""
    rows = []
    for (scenario, variant, arm, db, size, overflow), values in (plan or db_plan()).items():
        for repeat, value in enumerate(values, start=1):
            rps = (
                float(value)
                if isinstance(value, float)
                else (DB_INVALID_RPS if value == "invalid" else DB_STALL_RPS)
            )
            row = summary_row(Cell(scenario, variant, "-", users, repeat, arm=arm))
            mean_ms = users / rps * 1000
            requests = round(rps * 2)
            row.update(
                observe=True,
                db=db,
                db_pool_size=size,
                db_max_overflow=overflow,
                db_cpu_pct=round(rps / 20, 1) if db.startswith("postgresql") else "",
                rps=rps,
                requests=requests,
                ok=requests,
                p50_ms=round(mean_ms * 0.9, 2),
                p90_ms=round(mean_ms * 1.3, 2),
                p95_ms=round(mean_ms * 1.5, 2),
                p99_ms=round(mean_ms * 2, 2),
                max_ms=round(mean_ms * 3, 2),
                gap_max_s=0.2,
                threadpool_tokens=TOKENS,
                upstream_latency_ms="",
                valid=True,
                invalid_reason="",
                loadgen_cpu_pct=55.0,
            )
            if value == "deadlock":
                row.update(
                    stalled=True,
                    steady=False,
                    gap_max_s=12.4,
                    censored=users,
                    censored_min_ms=12_000.0,
                    stall_evidence=f"no completion for 12.4 s with {users} in flight",
                )
            elif value == "stall":
                row.update(
                    steady=False,
                    gap_max_s=10.3,
                    errors=40,
                    failures=40,
                    stall_evidence=f"no completion for 10.3 s with {users} in flight",
                )
            elif value == "invalid":
                row.update(valid=False, invalid_reason="load generator at 97% of its core")
            rows.append(row)
    return rows


def write_db_run(
    root: Path,
    rows: list[dict] | None = None,
    name: str = "pg-run",
    drop: tuple[str, ...] = (),
    db_wait_ms: int | None = DB_WAIT_MS,
) -> Path:
    """A run folder of `make bench-pg` (summary and manifest, cell folders without raw files);
    `drop`: summary columns left out, as an older orchestrator wrote it."""
    run = root / name
    run.mkdir(parents=True)
    rows = db_run_rows() if rows is None else rows
    write_summary(run / "summary.csv", rows, [c for c in SUMMARY_HEADER if c not in drop])
    matrix: dict[str, object] = {
        "users": [DB_USERS],
        "repeats": 2,
        "arms": [
            {"name": n, "env": dict(kv.split(" = ") for kv in e.split(", "))} for n, e in DB_ARMS
        ],
    }
    if db_wait_ms is not None:
        matrix["db_wait_ms"] = db_wait_ms
    write_manifest(run, {**MANIFEST, "run_id": name, "matrix": matrix})
    for row in rows:
        (run / str(row["cell_id"])).mkdir()
    return run
