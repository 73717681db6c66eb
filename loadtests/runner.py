"""Run cells and matrices: a fresh server per cell, Locust against it, results per contract."""

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from loadtests import manifest
from loadtests.locust_runner import STARTUP_SLACK_S, locust_command, merge_raw, wait_locust
from loadtests.matrix import Cell, MatrixSpec
from loadtests.process import (
    CpuSampler,
    Pinning,
    ServerError,
    free_port,
    pin,
    run_server,
    server_command,
    spawn,
    wait_healthy,
)
from loadtests.scenarios import SCENARIOS
from loadtests.scrape import MetricsScraper, cpu_rows, summarize_metrics, write_metrics
from loadtests.summary import load_requests, summarize_requests, validity, write_summary


@dataclass
class RunContext:
    """What every cell of a run shares."""

    out: Path
    pinning: Pinning
    python: str = sys.executable
    upstream_url: str | None = None
    upstream_pid: int | None = None
    target: str | None = None
    locust_processes: int = 1
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))


def server_env(cell: Cell, spec: MatrixSpec, ctx: RunContext) -> dict[str, str]:
    """LAB_* settings of a cell's server: fresh database, its HTTP client, the run's upstream."""
    env = {
        "LAB_DB_PATH": str(ctx.scratch / f"{cell.cell_id}.sqlite3"),
        "LAB_DB_RESET": "true",
        "LAB_DB_SEED_ROWS": str(spec.seed_rows),
        # The proxies' own HTTP timeouts stay at their defaults: they are part of what is measured.
        "LAB_THREADPOOL_TOKENS": str(spec.tokens_of(cell)),
    }
    if ctx.upstream_url:
        env["LAB_UPSTREAM_URL"] = ctx.upstream_url
    if cell.client in ("httpx", "aiohttp"):
        env["LAB_HTTP_CLIENT"] = cell.client
    return env


def locust_options(cell: Cell, spec: MatrixSpec) -> dict[str, Any]:
    """The lab's own Locust options for a cell (see locustfiles/common.py)."""
    return {
        "max_tokens": spec.tokens(cell.scenario) or 1,
        "ttft_ms": spec.ttft_ms,
        "itl_ms": spec.itl_ms,
        "cpu_ms": spec.cpu_ms,
        "seed_rows": spec.seed_rows,
        "request_timeout": spec.request_timeout_s,
    }


def cell_settings(cell: Cell, spec: MatrixSpec) -> dict[str, Any]:
    """The settings recorded in cell.json."""
    return {
        "duration_s": spec.duration_s,
        "warmup_s": spec.warmup_s,
        "spawn_rate": spec.spawn_rate,
        "grace_s": spec.grace_s,
        "threadpool_tokens": spec.tokens_of(cell),
        "upstream_latency_ms": spec.upstream_latency_ms(cell.scenario),
        **locust_options(cell, spec),
    }


def cell_command(cell: Cell, spec: MatrixSpec, ctx: RunContext, host: str) -> list[str]:
    """The Locust command line of a cell."""
    return locust_command(
        SCENARIOS[cell.scenario],
        host=host,
        users=cell.users,
        spawn_rate=spec.spawn_rate,
        run_time_s=spec.warmup_s + spec.duration_s,
        stop_timeout_s=spec.grace_s,
        cell_dir=ctx.out / cell.cell_id,
        options=locust_options(cell, spec),
        processes=ctx.locust_processes,
        python=ctx.python,
    )


def run_cell(cell: Cell, spec: MatrixSpec, ctx: RunContext) -> dict[str, Any]:
    """Run one cell and write its cell.json; failures are recorded, not raised."""
    cell_dir = ctx.out / cell.cell_id
    shutil.rmtree(cell_dir, ignore_errors=True)
    cell_dir.mkdir(parents=True)
    doc: dict[str, Any] = {
        "cell_id": cell.cell_id,
        "scenario": cell.scenario,
        "variant": cell.variant,
        "client": cell.client,
        "users": cell.users,
        "repeat": cell.repeat,
        "status": "failed",
        "reason": "",
        "valid": False,
        "invalid_reason": "",
        "window_start": None,
        "window_end": None,
        "cut_off": None,
        "settings": cell_settings(cell, spec),
        "env": server_env(cell, spec, ctx),
        "pinning": ctx.pinning.to_dict(),
        "cpu": {},
        "metrics": {},
        "mechanisms": {},
        "command": [],
    }
    started = time.monotonic()
    try:
        _measure(cell, spec, ctx, cell_dir, doc)
    except ServerError as exc:
        doc["reason"] = f"server: {exc} (see server.log)"
    except Exception as exc:  # one broken cell must not end the matrix
        doc["reason"] = f"{type(exc).__name__}: {exc}"
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{doc['env']['LAB_DB_PATH']}{suffix}").unlink(missing_ok=True)
    doc["wall_s"] = round(time.monotonic() - started, 2)
    (cell_dir / "cell.json").write_text(json.dumps(doc, indent=2))
    return doc


def _measure(
    cell: Cell, spec: MatrixSpec, ctx: RunContext, cell_dir: Path, doc: dict[str, Any]
) -> None:
    began = time.monotonic()
    with ExitStack() as stack, CpuSampler() as sampler:
        server = None
        host = ctx.target
        if host is None:
            port = free_port()
            host = f"http://127.0.0.1:{port}"
            server = stack.enter_context(
                spawn(
                    server_command(cell.variant, port, ctx.python),
                    cell_dir / "server.log",
                    env=doc["env"],
                    cpus=ctx.pinning.server,
                )
            )
            sampler.watch("server", server.pid)
        if ctx.upstream_pid is not None:
            sampler.watch("upstream", ctx.upstream_pid)
        doc["command"] = cmd = cell_command(cell, spec, ctx, host)
        timeout = spec.warmup_s + spec.duration_s + spec.grace_s + STARTUP_SLACK_S
        # Locust imports while the server starts (other core); it waits for /health itself.
        with spawn(cmd, cell_dir / "locust.log", cpus=ctx.pinning.load) as locust:
            sampler.watch("loadgen", locust.pid)
            if server is not None:
                wait_healthy(server, f"{host}/health")
            doc["timings"] = {"healthy_s": round(time.monotonic() - began, 2)}
            with MetricsScraper(f"{host}/metrics") as scraper:
                run = wait_locust(locust, timeout)
        server_code = server.poll() if server is not None else None
        locust_done = time.monotonic()
    doc.setdefault("timings", {})["stop_s"] = round(time.monotonic() - locust_done, 2)
    doc["locust"] = {"returncode": run.returncode, "timed_out": run.timed_out, "wall_s": run.wall_s}
    raw, meta = merge_raw(cell_dir)
    doc["locust"].update(meta)
    if server_code is not None:
        doc["reason"] = f"server exited with code {server_code} during the run (see server.log)"
        return
    if run.timed_out:
        doc["reason"] = f"Locust hung: killed after {timeout:.0f} s (see locust.log)"
        return
    if not run.ok or meta["test_start"] is None:
        doc["reason"] = f"Locust exited with code {run.returncode} (see locust.log)"
        return
    # The window is the last `duration_s` before the run time ran out; the rest was warm-up.
    end = meta["test_stopping"] or meta["test_start"] + spec.warmup_s + spec.duration_s
    start = end - spec.duration_s
    doc["window_start"], doc["window_end"] = start, end
    doc["metrics"] = summarize_requests(load_requests(raw), start, end)
    doc["cut_off"] = meta["cut_off"]
    doc["cpu"] = {
        f"{name}_{stat}": (None if v is None else round(v, 1))
        for name in ("loadgen", "upstream", "server")
        for stat, v in (
            ("pct", sampler.percent(name, start, end)),
            ("peak_pct", sampler.peak(name, start, end)),
        )
    }
    series = scraper.rows + cpu_rows(sampler.samples)
    write_metrics(cell_dir / "metrics.csv", series)
    doc["mechanisms"] = {
        **summarize_metrics(series, start, end),
        "scrape_failures": scraper.failures,
    }
    doc["status"] = "ok"
    doc["valid"], doc["invalid_reason"] = validity(
        doc["cpu"]["loadgen_pct"],
        doc["cpu"]["upstream_pct"],
        meta["spawned"],
        cell.users + SCENARIOS[cell.scenario].extra_users,
        ctx.pinning.shared_load_core,
    )


@contextmanager
def run_upstream(ctx: RunContext, spec: MatrixSpec) -> Iterator[None]:
    """Start the mock upstream once for the run, pinned with the load generator."""
    env = {"LAB_MOCK_TTFT_MS": str(spec.ttft_ms), "LAB_MOCK_ITL_MS": str(spec.itl_ms)}
    with run_server(
        "upstream", ctx.out / "upstream.log", env=env, cpus=ctx.pinning.load, python=ctx.python
    ) as (proc, url):
        ctx.upstream_url, ctx.upstream_pid = f"{url}/v1", proc.pid
        try:
            yield
        finally:
            ctx.upstream_url = ctx.upstream_pid = None


def plan_cells(spec: MatrixSpec, out: Path, resume: bool) -> tuple[list[Cell], list[Cell]]:
    """All cells, and those still to run (resume skips cells whose cell.json exists)."""
    cells = spec.cells()
    if not resume:
        return cells, cells
    return cells, [c for c in cells if not (out / c.cell_id / "cell.json").exists()]


def describe(doc: dict[str, Any]) -> str:
    """One progress line for a finished cell."""
    if doc["status"] != "ok":
        return f"[red]FAILED[/] {doc['reason']}"
    m = doc["metrics"]
    p99 = "-" if m.get("p99_ms") is None else f"{m['p99_ms']:.1f}"
    line = (
        f"rps={m['rps']:8.1f}  p99={p99:>8} ms  fail={m['failures']:<5} "
        f"cut={doc['cut_off']:<4} loadgen={doc['cpu'].get('loadgen_pct') or 0:3.0f}%  "
        f"server={doc['cpu'].get('server_pct') or 0:3.0f}%"
    )
    return line + ("" if doc["valid"] else f"  [yellow]INVALID[/] {doc['invalid_reason']}")


def run_matrix(
    spec: MatrixSpec, ctx: RunContext, resume: bool = False, console: Console | None = None
) -> list[dict[str, Any]]:
    """Run every cell still to do, keep summary.csv current; Ctrl-C keeps finished cells."""
    console = console or Console()
    # The orchestrator itself (sampling, bookkeeping) stays off the server's core.
    pin(os.getpid(), ctx.pinning.load)
    cells, todo = plan_cells(spec, ctx.out, resume)
    ctx.out.mkdir(parents=True, exist_ok=True)
    run_manifest = manifest.start(ctx, spec, cells, todo)
    order = [c.cell_id for c in cells]
    needs_upstream = not ctx.target and any(SCENARIOS[c.scenario].proxy for c in todo)
    docs: list[dict[str, Any]] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s est."),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    try:
        with ExitStack() as stack:
            if needs_upstream:
                stack.enter_context(run_upstream(ctx, spec))
            stack.enter_context(progress)
            bar = progress.add_task("cells", total=spec.estimate_s(todo))
            for i, cell in enumerate(todo, 1):
                progress.update(bar, description=f"{i}/{len(todo)} {cell.cell_id}")
                doc = run_cell(cell, spec, ctx)
                docs.append(doc)
                line = f"{i:>4}/{len(todo)} {cell.cell_id:<36} {describe(doc)}"
                console.print(line, soft_wrap=True)
                progress.advance(bar, spec.cell_seconds(cell))
                write_summary(ctx.out, order)
    finally:
        write_summary(ctx.out, order)
        manifest.finish(ctx.out, run_manifest, docs)
    return docs
