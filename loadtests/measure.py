"""Run one planned cell: start its server and Locust, collect, assess, write cell.json.

`measure(plan, ctx)` is the one level every kind of run goes through (the lab's matrix, its
capacity searches, `sync-async-lab probe`): a fresh server in its own process group on its own
core, Locust on the load core, both waiting for the server's ready route; then the rows, CPU
samples and /metrics series are assessed (loadtests/assess.py) into one typed `CellResult`.
A cell that breaks is recorded as failed, with the reason and its server log's tail, never
raised: one broken cell must not end a matrix.
"""

import json
import shutil
import time
import urllib.request
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import CELL_SCHEMA_VERSION
from contract.cell import CellResult
from loadtests.assess import Assessed, assess
from loadtests.context import RunContext
from loadtests.distributed import missing_workers
from loadtests.files import write_atomic
from loadtests.locust_runner import STARTUP_SLACK_S, LocustRun, merge_raw, wait_locust
from loadtests.plan import CellPlan
from loadtests.process import CpuSampler, ServerError, free_port, log_tail, spawn, wait_healthy
from loadtests.scrape import MetricsScraper, Row, cpu_rows, write_metrics

# A failed cell keeps this many of the last lines of its server.log in cell.json.
SERVER_LOG_LINES = 10
LOG_LINE_MAX = 300
START_FILE = "go"


@dataclass(frozen=True)
class Collected:
    """What a cell's run left behind: Locust's end, its rows and facts, CPU and the server's."""

    locust: LocustRun
    meta: dict[str, Any]
    requests: Path
    cpu: CpuSampler
    series: list[Row]
    scrape_failures: int
    server_exit: int | None
    healthy_s: float
    upstream: dict[str, float] | None


def measure(plan: CellPlan, ctx: RunContext) -> CellResult:
    """Run one cell and write its cell.json; failures are recorded, not raised."""
    cell_dir = ctx.out / plan.cell_id
    shutil.rmtree(cell_dir, ignore_errors=True)
    cell_dir.mkdir(parents=True)
    started = time.monotonic()
    collected: Collected | None = None
    assessed: Assessed | None = None
    reason = ""
    try:
        collected = collect(plan, ctx, cell_dir)
        reason = failure(collected, ctx.load_hosts.placement() if ctx.load_hosts else None)
        if not reason:
            assessed = assess(
                plan, collected, cell_dir, ctx.pinning.shared_load_core, ctx.load_hosts is not None
            )
    except ServerError as exc:
        reason = f"server never became ready: {exc}"
    except Exception as exc:  # one broken cell must not end the matrix
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        for path in plan.server.scratch:
            path.unlink(missing_ok=True)
    # The server is gone by now (spawn killed its group): its log is complete.
    tail = log_tail(cell_dir / "server.log", SERVER_LOG_LINES) if reason else []
    result = record(plan, ctx, collected, assessed, with_log_end(reason, tail), tail)
    result = result.model_copy(update={"wall_s": round(time.monotonic() - started, 2)})
    write_atomic(cell_dir / "cell.json", result.dump())
    return result


def with_log_end(reason: str, tail: list[str]) -> str:
    """A server failure's reason with the last line its server.log holds (often the error).

    Every other line of the tail is in cell.json `server_log_tail` and on the console.
    """
    if not reason.startswith("server ") or not tail:
        return reason
    return f"{reason}; server.log ends: {clip(tail[-1])}"


def clip(line: str) -> str:
    """One log line, cut to LOG_LINE_MAX characters."""
    return line if len(line) <= LOG_LINE_MAX else line[: LOG_LINE_MAX - 3] + "..."


def collect(plan: CellPlan, ctx: RunContext, cell_dir: Path) -> Collected:
    """Start the server and Locust, wait for the end, gather rows, CPU, /metrics, artifacts."""
    began = time.monotonic()
    upstream_before = upstream_stats(ctx)
    with ExitStack() as stack, CpuSampler() as sampler:
        server = None
        host = ctx.target
        if host is None:
            port = free_port()
            # Load hosts elsewhere reach the server where they reach the master.
            bind = ctx.load_hosts.master_address if ctx.load_hosts else "127.0.0.1"
            host = f"http://{bind}:{port}"
            server = stack.enter_context(
                spawn(
                    plan.server.argv(port, bind),
                    cell_dir / "server.log",
                    env=plan.server.env,
                    cpus=ctx.pinning.server,
                    cwd=plan.server.cwd,
                )
            )
            sampler.watch("server", server.pid)
        if ctx.upstream_pid is not None:
            sampler.watch("upstream", ctx.upstream_pid)
        if ctx.db_pid is not None and plan.db and plan.db.startswith("postgresql"):
            sampler.watch("db", ctx.db_pid)
        # Locust imports while the server starts, then waits for this file: the load begins only
        # after the orchestrator itself saw the server ready (a load that blocks the loop at
        # once must not be mistaken for a server that never became ready).
        go = cell_dir / START_FILE
        master_port = free_port() if ctx.load_hosts is not None else None
        cmd = plan.locust_command(
            ctx, host, server.pid if server is not None else None, go, master_port
        )
        (cell_dir / "command.json").write_text(json.dumps(cmd))
        timeout = plan.clock.longest_s + STARTUP_SLACK_S
        # Locust imports while the server starts (other core); both wait for the ready route,
        # which needs no thread, so a server stalled later still counts as ready now.
        with spawn(cmd, cell_dir / "locust.log", cpus=ctx.pinning.load) as locust:
            sampler.watch("loadgen", locust.pid)
            if ctx.load_hosts is not None and master_port is not None:
                start_workers(stack, plan, ctx, cell_dir, master_port)
            if server is not None:
                wait_healthy(server, f"{host}{plan.server.ready_path}", ctx.ready_timeout_s)
            go.touch()
            healthy_s = time.monotonic() - began
            scraper = MetricsScraper(f"{host}{plan.server.metrics_path}")
            # With the observer off, nothing scrapes either: the arm measures no observation.
            with scraper if plan.settings.get("observe", True) else nullcontext():
                run = wait_locust(locust, timeout)
        server_code = server.poll() if server is not None else None
    raw, meta = merge_raw(cell_dir)
    return Collected(
        locust=run,
        meta=meta,
        requests=raw,
        cpu=sampler,
        series=scraper.rows + cpu_rows(sampler.samples),
        scrape_failures=scraper.failures,
        server_exit=server_code,
        healthy_s=round(healthy_s, 2),
        upstream=stats_delta(upstream_before, upstream_stats(ctx)),
    )


def start_workers(
    stack: ExitStack, plan: CellPlan, ctx: RunContext, cell_dir: Path, port: int
) -> None:
    """The cell's Locust workers on the load hosts, each in its own process group (stopped with
    the cell, whatever happens), its output in `worker-<i>-<host>.log`."""
    assert ctx.load_hosts is not None
    scenario = plan.scenario
    for i, host in enumerate(ctx.load_hosts.placement()):
        cmd = ctx.load_hosts.worker_command(
            host, ctx.python, str(scenario.path), scenario.user_classes, port
        )
        stack.enter_context(spawn(cmd, cell_dir / f"worker-{i}-{safe(host)}.log"))


def safe(name: str) -> str:
    """A host name usable in a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def failure(collected: Collected, placement: list[str] | None = None) -> str:
    """Why a collected cell has no numbers ("" when it has); `placement`: the host of each
    load worker of a distributed cell, each of which must have sent its rows."""
    run, meta = collected.locust, collected.meta
    if placement is not None and (lost := missing_workers(meta, placement)):
        return lost
    if collected.server_exit is not None:
        return f"server exited with code {collected.server_exit} during the run"
    if meta.get("not_ready"):
        return f"server never became ready: Locust found {meta['not_ready']} silent"
    if run.timed_out:
        return f"Locust hung: killed after {run.wall_s:.0f} s (see locust.log)"
    if not run.ok or meta["test_start"] is None:
        return f"Locust exited with code {run.returncode} (see locust.log)"
    if meta.get("window_end") is None:
        return "the locustfile's clock never closed the window (see locust.log)"
    return ""


def upstream_stats(ctx: RunContext) -> dict[str, float] | None:
    """The mock upstream's own counters (GET /stats), None when there is none or it is silent."""
    if not ctx.upstream_url:
        return None
    root = ctx.upstream_url.removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/stats", timeout=2.0) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def stats_delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """What the upstream served between two /stats reads."""
    if not before or not after:
        return None
    return {k: after[k] - before[k] for k in after if isinstance(after.get(k), int | float)}


def record(
    plan: CellPlan,
    ctx: RunContext,
    collected: Collected | None,
    assessed: Assessed | None,
    reason: str,
    log: list[str],
) -> CellResult:
    """The cell's typed record: the cell, its settings, and what was measured (or why not)."""
    cell = plan.cell
    measured = assessed or Assessed()
    if collected is not None:
        write_metrics(ctx.out / cell.cell_id / "metrics.csv", collected.series)
    return CellResult(
        schema_version=CELL_SCHEMA_VERSION,
        cell_id=cell.cell_id,
        scenario=cell.scenario,
        variant=cell.variant,
        client=cell.client,
        arm=cell.arm,
        users=cell.users,
        offered_rps=cell.rate,
        repeat=cell.repeat,
        status="ok" if assessed is not None else "failed",
        reason=reason,
        valid=measured.valid,
        invalid_reason=measured.invalid_reason,
        window_start=measured.window[0],
        window_end=measured.window[1],
        cut_off=None if collected is None else collected.meta.get("cut_off"),
        settings=plan.settings,
        env=plan.server.env,
        pinning=ctx.pinning.to_dict(),
        db=plan.db,
        server=plan.server.name if ctx.target is None else "",
        cpu=measured.cpu,
        metrics=measured.metrics,
        judged=measured.judged,
        mechanisms=measured.mechanisms,
        command=plan.locust_command(ctx, ctx.target or "http://127.0.0.1:<port>"),
        timings=None if collected is None else {"healthy_s": collected.healthy_s},
        locust=None if collected is None else locust_facts(collected),
        upstream_stats=None if collected is None else collected.upstream,
        server_log_tail=log,
        probe=plan.probe,
    )


def locust_facts(collected: Collected) -> dict[str, Any]:
    """cell.json `locust`: how Locust ended, and the facts its clock wrote."""
    return {
        "returncode": collected.locust.returncode,
        "timed_out": collected.locust.timed_out,
        "wall_s": collected.locust.wall_s,
        **collected.meta,
    }
