"""The lab's matrix, one level at a time: a cell, a pass of cells, the searches, the whole run.

As vLLM's `benchmarks/sweep` splits its loop, each function here is one level deep:
- `run_cell`: one matrix cell (its plan from `loadtests.plan`, run by `loadtests.measure`);
- `run_cells`: the cells still to do, calibrating after each pass (repeat);
- `run_searches`: every SLO capacity search (`loadtests.search`), one rate cell at a time;
- `run_matrix`: a session (`loadtests.session`: manifest, services, bar) around the two.
"""

import functools
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from contract import NO_CLIENT, NOT_STEADY, STALLED
from contract.cell import CellResult
from contract.slo import SloCheck, check
from loadtests.context import RunContext
from loadtests.matrix import Cell, MatrixSpec
from loadtests.measure import clip, measure
from loadtests.plan import plan_cell
from loadtests.scenarios import SCENARIOS
from loadtests.search import Search, capacity_row, run_search, write_capacity
from loadtests.session import Services, Session, run_session
from loadtests.summary import summary_row


def run_cell(cell: Cell, spec: MatrixSpec, ctx: RunContext) -> CellResult:
    """Run one cell of the matrix and write its cell.json; failures are recorded, not raised."""
    return measure(plan_cell(cell, spec, ctx), ctx)


def plan_cells(spec: MatrixSpec, out: Path, resume: bool) -> tuple[list[Cell], list[Cell]]:
    """All cells, and those still to run (resume skips cells whose cell.json exists)."""
    cells = spec.cells()
    if not resume:
        return cells, cells
    return cells, [c for c in cells if not (out / c.cell_id / "cell.json").exists()]


def services_for(spec: MatrixSpec, ctx: RunContext, todo: list[Cell]) -> Services:
    """The run's services the cells to do (and the searches) need."""
    proxy = any(SCENARIOS[c.scenario].proxy for c in todo) or any(
        SCENARIOS[s[0]].proxy for s in spec.searches()
    )
    return Services(
        upstream=proxy and not ctx.target,
        ttft_ms=spec.ttft_ms,
        itl_ms=spec.itl_ms,
        cluster=spec.needs_lab_cluster(todo, bool(spec.searches())),
    )


def run_matrix(
    spec: MatrixSpec, ctx: RunContext, resume: bool = False, console: Console | None = None
) -> list[CellResult]:
    """Run every cell still to do, then the searches; Ctrl-C keeps finished cells.

    The machine is calibrated before the first cell and after each pass (repeat).
    """
    console = console or Console()
    spec.check_target(ctx.target)
    cells, todo = plan_cells(spec, ctx.out, resume)
    extra = {"server_settings": spec.server_settings(ctx.python)}
    with run_session(
        ctx,
        spec.to_dict(),
        [c.cell_id for c in cells],
        spec.estimate_s(todo),
        console,
        services_for(spec, ctx, todo),
        calibrate_first=("resume" if resume else "before") if todo or spec.searches() else None,
        manifest_extra=extra,
    ) as session:
        run_cells(todo, spec, session)
        if spec.searches():
            run_searches(spec, session, resume)
        return session.results


def run_cells(todo: list[Cell], spec: MatrixSpec, session: Session) -> None:
    """Run `todo` in order; calibrate after the last cell of each pass."""
    for i, cell in enumerate(todo, 1):
        session.doing(f"{i}/{len(todo)} {cell.cell_id}")
        result = run_cell(cell, spec, session.ctx)
        line = f"{i:>4}/{len(todo)} {cell.cell_id:<36} {describe(result)}"
        session.done(result, spec.cell_seconds(cell), line)
        if i == len(todo) or todo[i].repeat != cell.repeat:
            session.calibrate(f"after pass {cell.repeat}")


def measure_rate(
    search: Search, rate: int, spec: MatrixSpec, session: Session, resume: bool, label: str
) -> tuple[SloCheck, dict[str, object]]:
    """Run (or on --resume read back) one rate of `search`; its row checked against the SLO."""
    slo = spec.slo_spec()
    assert slo is not None
    cell = spec.rate_cell(search.scenario, search.variant, search.client, rate, search.repeat)
    done = session.ctx.out / cell.cell_id / "cell.json"
    session.doing(f"{label} {cell.cell_id}")
    again = resume and done.exists()
    result = CellResult.load(done) if again else run_cell(cell, spec, session.ctx)
    row = summary_row(result)
    verdict = check(row, slo)
    line = f"{label} {cell.cell_id:<36} {describe(result)}  SLO: {verdict.status} ({verdict.why})"
    session.done(result, spec.cell_seconds(cell), line, advance=not again)
    return verdict, row


def run_searches(spec: MatrixSpec, session: Session, resume: bool) -> None:
    """Run every SLO capacity search (loadtests/search.py); capacity.csv is kept current.

    On --resume a rate already measured is read back from its cell.json, so the search takes
    the same path again and goes on where it stopped.
    """
    slo = spec.slo_spec()
    assert slo is not None
    rows = []
    plan = spec.searches()
    for i, (scenario, variant, client, repeat) in enumerate(plan, 1):
        search = Search(scenario, variant, client, repeat)
        label = f"search {i}/{len(plan)}"
        rate_of = functools.partial(
            measure_rate, search, spec=spec, session=session, resume=resume, label=label
        )
        run_search(search, spec.rates, spec.bisect_steps, rate_of)
        row = capacity_row(search, slo)
        rows.append(row)
        write_capacity(session.ctx.out, rows)
        session.console.print(
            f"capacity {scenario} {variant}{'' if client == NO_CLIENT else '-' + client}: "
            f"{row['capacity_rps'] or '-'} req/s at "
            f"{slo.text()} ({row['bound']}; {row['limit_reason'] or 'every rate passed'})",
            soft_wrap=True,
        )
        if i == len(plan) or plan[i][3] != repeat:
            session.calibrate(f"after search pass {repeat}")


# --- What the console says of a finished cell -------------------------------------------------


def flags(result: CellResult) -> list[str]:
    """What is wrong with a finished cell's numbers, most serious first (empty: nothing)."""
    out = []
    if result.stalled:
        out.append(f"[red]{STALLED.upper()}[/] {result.judged.stall_evidence}")
    if not result.valid:
        out.append(f"[yellow]INVALID[/] {result.invalid_reason}")
    if result.metrics.steady is False:
        out.append(f"[yellow]{NOT_STEADY.upper()}[/] ({not_steady_evidence(result)})")
    return out


def not_steady_evidence(result: CellResult) -> str:
    """Why Little's law failed, in the cell's own numbers."""
    m = result.metrics
    ratio = m.little_ratio
    parts = [f"Little: {ratio:.2f}" if ratio is not None else "no request started in the window"]
    if m.users_in_loop is not None and m.users_in_loop < result.users:
        parts.append(f"{m.users_in_loop}/{result.users} users had an answer before the window")
    if m.starved:
        parts.append(f"{m.starved} requests waited through the whole window")
    return "; ".join(parts)


def describe(result: CellResult) -> str:
    """One progress line for a finished cell."""
    if not result.ok:
        shown = "".join(
            f"\n      server.log | {escape(clip(line))}" for line in result.server_log_tail
        )
        return f"[red]FAILED[/] {escape(result.reason)}{shown}"
    m = result.metrics
    if m.p99_ms is not None:
        p99 = f"{m.p99_ms:.1f}"
    else:
        # The sample rule: no p99 below 1,000 samples; the count says why.
        p99 = f"-(n={m.latency_n or 0})"
    rate = ""
    if result.offered_rps is not None:
        rate = (
            f"offered={result.offered_rps:g} sent={m.achieved_rps or 0:.1f}/s "
            f"served={m.served_rps or 0:.1f}/s  "
        )
    line = (
        f"{rate}rps={m.rps or 0:8.1f}  p99={p99:>8} ms  n={m.requests:<5} ok={m.ok:<5} "
        f"err={m.errors:<4} timeout={m.timeouts:<3} censored={m.censored:<4} "
        f"loadgen={result.cpu.loadgen_pct or 0:3.0f}%  "
        f"server={result.cpu.server_pct or 0:3.0f}%"
    )
    return "  ".join([line, *flags(result)])
