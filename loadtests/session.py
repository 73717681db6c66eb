"""One run's session: the manifest, the run's own services, calibration and the progress bar.

`run_session(...)` is the context every kind of run works inside: the orchestrator pinned to the
load core, manifest.json started (and finished on the way out, `interrupted` after Ctrl-C), the
mock upstream and the lab's PostgreSQL started when the cells need them and stopped after, the
machine calibrated before the first cell. The runs themselves (the matrix's cells, capacity
searches, the probe's routes) report each finished cell to `Session.done`.
"""

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from contract import CALIBRATION_KEYS
from contract.cell import CellResult
from loadtests import manifest, postgres
from loadtests.calibrate import calibrate
from loadtests.context import RunContext
from loadtests.process import pin, run_server
from loadtests.summary import write_summary


@dataclass
class Session:
    """What the cells of one run share while it runs: the console, the bar, the results."""

    ctx: RunContext
    console: Console
    progress: Progress
    bar: Any
    # Cell ids in the order summary.csv lists them (planned ones first, then those added).
    order: list[str]
    results: list[CellResult] = field(default_factory=list)

    def doing(self, label: str) -> None:
        """Say on the bar what runs now."""
        self.progress.update(self.bar, description=label)

    def done(self, result: CellResult, estimate_s: float, line: str, advance: bool = True) -> None:
        """A cell finished: keep it, print its line, move the bar, rewrite summary.csv."""
        self.results.append(result)
        if result.cell_id not in self.order:
            self.order.append(result.cell_id)
        self.console.print(line, soft_wrap=True)
        if advance:
            self.progress.advance(self.bar, estimate_s)
        write_summary(self.ctx.out, self.order)

    def calibrate(self, label: str) -> dict[str, Any] | None:
        """Measure how fast the machine is now (not against a `--target`); failures recorded."""
        if self.ctx.target:
            return None
        return take_calibration(self.ctx, label, self.console)


def new_progress(console: Console) -> Progress:
    """The bar every run shows: what runs, estimated seconds done of the total, elapsed, ETA."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s est."),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


@dataclass(frozen=True)
class Services:
    """The run's own services a run needs: the mock upstream (with its latency model) and the
    lab's PostgreSQL cluster."""

    upstream: bool = False
    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    cluster: bool = False


@contextmanager
def run_session(
    ctx: RunContext,
    matrix: dict[str, Any],
    planned: list[str],
    estimate_s: float,
    console: Console,
    services: Services = Services(),
    calibrate_first: str | None = "before",
    manifest_extra: dict[str, Any] | None = None,
) -> Iterator[Session]:
    """Pin, start the manifest and the run's services, calibrate, show the bar; finish it all.

    `matrix` is recorded as manifest.json `matrix`; `planned` are every cell id of the run (those
    done before included), `estimate_s` what is left to run. On the way out summary.csv is
    rewritten and manifest.json finished, marked `interrupted` when a KeyboardInterrupt
    (Ctrl-C, SIGTERM) ends the run.
    """
    # The orchestrator itself (sampling, bookkeeping) stays off the server's core.
    pin(os.getpid(), ctx.pinning.load)
    ctx.out.mkdir(parents=True, exist_ok=True)
    started = manifest.start(ctx, matrix, planned, estimate_s, manifest_extra)
    progress = new_progress(console)
    session: Session | None = None
    interrupted = False
    try:
        with ExitStack() as stack:
            if services.upstream and not ctx.target:
                stack.enter_context(run_upstream(ctx, services.ttft_ms, services.itl_ms))
            if services.cluster:
                stack.enter_context(run_cluster(ctx))
            stack.enter_context(progress)
            bar = progress.add_task("cells", total=estimate_s)
            session = Session(ctx, console, progress, bar, list(planned))
            if calibrate_first:
                session.calibrate(calibrate_first)
            yield session
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        order = session.order if session is not None else planned
        write_summary(ctx.out, order)
        results = session.results if session is not None else []
        manifest.finish(ctx.out, manifest.load(ctx.out) or started, results, interrupted)


def take_calibration(ctx: RunContext, label: str, console: Console) -> dict[str, Any]:
    """Measure how fast the machine is right now; a failure is recorded, not raised."""
    try:
        entry: dict[str, Any] = {"label": label, **calibrate(ctx.pinning, ctx.python)}
    except Exception as exc:  # a broken calibration must not cost the run
        entry = {"label": label, "ts": time.time(), "error": f"{type(exc).__name__}: {exc}"}
    manifest.add_calibration(ctx.out, entry)
    shown = ", ".join(f"{k}={v:,.0f}" for k, v in entry.items() if k in CALIBRATION_KEYS)
    console.print(f"calibration {label}: {shown or entry.get('error')}", soft_wrap=True)
    return entry


@contextmanager
def run_cluster(ctx: RunContext) -> Iterator[None]:
    """Start PostgreSQL once for the run, pinned with the load generator (its CPU is recorded
    per cell as `db_cpu_pct`); every cell's server gets a freshly seeded table."""
    with postgres.run_postgres(base=ctx.scratch, cpus=ctx.pinning.load) as cluster:
        ctx.db_url, ctx.db_pid = cluster.url, cluster.pid
        try:
            yield
        finally:
            ctx.db_url = ctx.db_pid = None


@contextmanager
def run_upstream(ctx: RunContext, ttft_ms: float, itl_ms: float) -> Iterator[None]:
    """Start the mock upstream once for the run, pinned with the load generator."""
    env = {"LAB_MOCK_TTFT_MS": str(ttft_ms), "LAB_MOCK_ITL_MS": str(itl_ms)}
    with run_server(
        "upstream", ctx.out / "upstream.log", env=env, cpus=ctx.pinning.load, python=ctx.python
    ) as (proc, url):
        ctx.upstream_url, ctx.upstream_pid = f"{url}/v1", proc.pid
        try:
            yield
        finally:
            ctx.upstream_url = ctx.upstream_pid = None
