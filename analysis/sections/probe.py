"""The section "Probe": `def` or `async def` for each route of the user's own app.

It leads the report of a run made by `sync-async-lab probe` (a run with `routes.json` and
`probe.json` beside its cells; any other run has no such section): first one table a person
reads in ten seconds (route, style, finding, what to change, the number that shows it), then per
route what it does, the arms beside the app as written, every cell, and the lab's charts drawn
from the route's cells (throughput and loop lag against users, what held the loop per call, the
threadpool over the heaviest cell, the hockey stick of its capacity search). The findings are
analysis.judge.probe's; the section also writes them as `routes.csv` beside the report (`files`).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table
from analysis.fmt import ms
from analysis.judge.capacity import StyleCapacity, capacities, rate_cells, rate_points, run_slo
from analysis.judge.probe import (
    FINDINGS,
    NOT_PROBED,
    Finding,
    dependencies_run,
    findings,
    other_style,
    per_s,
    ping,
    routes_frame,
)
from analysis.judge.repeats import over_repeats
from analysis.judge.verdict import Verdicts
from analysis.load.probe import ProbeCell, ProbeRun, is_probe_run, load_probe
from analysis.load.run import Run, load_metrics
from analysis.plot.capacity import hockey
from analysis.plot.charts import Chart, save_chart
from analysis.plot.mechanism import plot_loop_lag, plot_threadpool
from analysis.plot.plots import plot_throughput
from analysis.plot.probe import plot_holds
from analysis.sections.protocol import Place
from analysis.vocabulary import ASYNC, SYNC
from contract.slo import Slo

ROUTES_CSV = "routes.csv"
FIRST_HEADER = ("route", "style", "finding", "what to change", "the number that shows it")
CELL_HEADER = (
    "cell",
    "runs as",
    "users / offered",
    "req/s",
    "p99",
    "ping p50 beside it",
    "threads in use / waiting",
    "loop held (calls, p99)",
    "state",
)
AGG_METRICS = ("rps", "p99_ms", "p50_ms", "loop_lag_max_ms", "loop_lag_p99_ms", "server_cpu_pct")


def style_key(style: str) -> str:
    """The vocabulary's style of a route's written style: `def` is sync's colour, else async."""
    return SYNC if style == "def" else ASYNC


@dataclass(frozen=True)
class ProbeTable:
    """Everything the section shows, computed once: the run's files, each route's finding, its
    cells over repeats by style and users, and its capacity search."""

    probe: ProbeRun
    findings: tuple[Finding, ...]
    agg: pd.DataFrame
    excluded: pd.DataFrame
    points: pd.DataFrame
    capacities: tuple[StyleCapacity, ...]
    slo: Slo | None
    routes: pd.DataFrame


def styled(summary: pd.DataFrame, probe: ProbeRun) -> pd.DataFrame:
    """The probe's closed-loop rows of the app as written and of its flip arm, each with the
    style the cell ran the route in (the other style for the flip)."""
    written = {r["id"]: r["style"] for r in probe.routes()}
    tokens = {c.cell_id: (c.token_arm, c.arm) for c in probe.cells}
    rows = summary[summary["scenario"].isin(written)].copy()
    keep = [
        not tokens.get(i, (True, ""))[0] and tokens[i][1] in ("", "flip") for i in rows["cell_id"]
    ]
    rows = rows[keep]
    rows["style"] = [
        style_key(other_style(written[s]) if arm == "flip" else written[s])
        for s, arm in zip(rows["scenario"], rows["arm"], strict=True)
    ]
    return rows


def counted(rows: pd.DataFrame) -> pd.Series:
    """Rows whose numbers describe the server: ok, valid, steady, not stalled."""
    steady = rows["steady"].fillna(True).astype(bool) if "steady" in rows else True
    ran = (rows["status"] == "ok") & rows["valid"].astype(bool)
    return ran & ~rows["stalled"].astype(bool) & steady


class Probe:
    """The probe's section: one route of the user's app per scenario."""

    key = "probe"
    place = Place.LEAD
    # A probe run's cells are routes of one app: this section is its report (protocol).
    standalone = True
    reading: tuple[str, ...] = (
        "Probe: each route of your app ran alone under the lab's launcher, the app as written "
        "and each arm (one change, your code untouched): `flip` runs the endpoint in the other "
        "style, `t010`/`t100` the threadpool at 10 or 100 tokens, `maxconc` its `yield` "
        "dependency under `max_concurrency`. Blue is the route run as `def`, green as "
        "`async def`. The ping is the lab's own light route, answered on the event loop beside "
        "the load: its latency is what every other request of the app waits.",
    )

    def scenarios(self, run: Run) -> list[str]:
        """Every route of a probe run (the inventory's, probed or not); [] for any other run."""
        if not is_probe_run(run.path):
            return []
        return [r["id"] for r in load_probe(run.path).routes()]

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> ProbeTable:
        """The findings and the frames the charts draw, from the run's files once."""
        probe = load_probe(run.path)
        found = tuple(f for f in findings(probe) if f.id in scenarios)
        rows = styled(run.summary, probe)
        good = counted(rows)
        agg = over_repeats(rows[good], ["scenario", "style", "users"], AGG_METRICS)
        first = {}
        for metric in ("upstream_latency_ms", "threadpool_tokens"):
            first[metric] = rows.groupby(["scenario", "style", "users"])[metric].first()
        for values in first.values():
            agg = agg.merge(values.reset_index(), on=["scenario", "style", "users"], how="left")
        rates = run.rates.copy()
        written = {r["id"]: r["style"] for r in probe.routes()}
        if not rates.empty:
            rates["style"] = [style_key(written.get(s, "def")) for s in rates["scenario"]]
        slo = run_slo(run.manifest, run.capacity)
        cells = rate_cells(rates, slo) if not rates.empty else rates
        capacity = run.capacity.copy()
        if not capacity.empty:
            capacity["style"] = [style_key(written.get(s, "def")) for s in capacity["scenario"]]
        return ProbeTable(
            probe=probe,
            findings=found,
            agg=agg,
            excluded=rows[~good],
            points=rate_points(cells) if len(cells) else pd.DataFrame(),
            capacities=tuple(capacities(capacity, cells)) if not capacity.empty else (),
            slo=slo,
            routes=routes_frame(found),
        )

    def files(self, table: ProbeTable, out_dir: Path) -> list[Path]:
        """routes.csv beside the report: one row per route (results/README.md)."""
        path = out_dir / ROUTES_CSV
        table.routes.to_csv(path, index=False)
        return [path]

    def charts(self, table: ProbeTable, out_dir: Path) -> list[Chart]:
        """Per probed route: throughput, loop lag, the holds, the threadpool, the hockey stick."""
        out: list[Chart] = []
        for f in table.findings:
            if f.finding == NOT_PROBED:
                continue
            out += route_charts(table, f, out_dir)
        return out

    def blocks(self, table: ProbeTable, charts: Sequence[Chart]) -> list[Block]:
        """The ten-second table, then each route."""
        probe = table.probe
        settings = probe.plan.get("settings", {})
        levels = ", ".join(str(u) for u in settings.get("levels", []))
        blocks: list[Block] = [
            Heading(f"Probe: `{probe.app}`"),
            Paragraph(intro(settings, levels, table.slo)),
            Table(FIRST_HEADER, first_rows(table.findings)),
        ]
        by_route: dict[str, list[Chart]] = {}
        for chart in charts:
            by_route.setdefault(chart.scenario, []).append(chart)
        probed = [f for f in by_finding(table.findings) if f.finding != NOT_PROBED]
        for f in probed:
            blocks += route_blocks(f, by_route.get(f.id, []))
        if left := [f for f in table.findings if f.finding == NOT_PROBED]:
            blocks += [
                Heading("Not probed", 3),
                Bullets([f"`{f.label}` (`{f.route['style']}`): {f.advice}" for f in left]),
            ]
        return blocks


def intro(settings: dict, levels: str, slo: Slo | None) -> str:
    """What the probe ran, in one paragraph."""
    capacity = (
        f"and its capacity at {slo.text()} under open-loop load (a search over offered rates "
        "from its closed-loop throughput)"
        if settings.get("capacity")
        else "(no capacity search: `--quick`)"
    )
    return (
        f"Each route ran alone, on a fresh server per cell (uvicorn with uvloop and httptools "
        f"on its own core, Locust on the other), closed loop at {levels} users, the arms at "
        f"the heaviest load, {capacity}. A finding follows from the route's own cells "
        "(analysis/judge/probe.py: the rules and the noise); `site` is the line to change. "
        "The light ping beside every cell shows what the route does to the rest of the app."
    )


def by_finding(found: Sequence[Finding]) -> list[Finding]:
    """The routes in the order a reader acts on them: the findings' order (stalls first,
    not_probed last), the app's own order within one finding."""
    return sorted(found, key=lambda f: FINDINGS.index(f.finding))


def first_rows(found: Sequence[Finding]) -> list[list[str]]:
    """The ten-second table: one row per probed route, worst finding first, then one row per
    reason a route was not probed (its routes named together)."""
    ordered = by_finding(found)
    rows = [first_row(f) for f in ordered if f.finding != NOT_PROBED]
    reasons: dict[str, list[Finding]] = {}
    for f in ordered:
        if f.finding == NOT_PROBED:
            reasons.setdefault(f.advice, []).append(f)
    for reason, group in reasons.items():
        styles = ", ".join(dict.fromkeys(f"`{f.route['style']}`" for f in group))
        names = ", ".join(f"`{f.label}`" for f in group)
        rows.append([names, styles, f"**{NOT_PROBED}**", reason, "-"])
    return rows


def first_row(f: Finding) -> list[str]:
    """One row of the ten-second table."""
    style = f"`{f.route['style']}`"
    if deps := dependencies_run(f.route, user_only=True):
        style += "; " + ", ".join(
            f"`{name}`: `{kind}`{f' (x{n})' if n > 1 else ''}" for name, kind, n in deps
        )
    change = f.advice
    if f.site:
        change = f"`{f.site}`" + (f" (`{f.call}`)" if f.call else "") + f": {f.advice}"
    return [f"`{f.label}`", style, f"**{f.finding}**", change, f.headline or "-"]


def cell_state(c: ProbeCell) -> str:
    """What was wrong with a cell's numbers, or `counted`."""
    r = c.result
    if not r.ok:
        return f"failed: {r.reason}"
    if r.stalled:
        return "stalled"
    notes = []
    if not r.valid:
        notes.append(f"invalid: {r.invalid_reason}")
    if r.metrics.steady is False:
        notes.append("not steady")
    return "; ".join(notes) or "counted"


def cell_row(c: ProbeCell, f: Finding) -> list[str]:
    """One cell of a route, in the route's table."""
    r, m = c.result, c.result.mechanisms
    runs = (r.probe or {}).get("runs_as", "")
    if runs.startswith("as written"):
        runs = f"`{f.route['style']}` ({runs})"
    load = f"{r.offered_rps:g} req/s offered" if r.offered_rps is not None else f"{r.users} users"
    p99 = r.metrics.p99_ms
    p99_text = ms(p99) if p99 is not None else f"n={r.metrics.latency_n or 0} (too few)"
    p50, n = ping(c)
    held = c.user_held()
    held_text = f"{held[0].count}, {ms(held[0].q(99))}" if held else "-"
    threads = "-"
    if m.threadpool_peak_in_use is not None:
        threads = f"{m.threadpool_peak_in_use:.0f}/{c.tokens}, {m.threadpool_peak_waiting or 0:.0f}"
    return [
        f"`{c.cell_id.split('__', 1)[1]}`",
        runs,
        load,
        per_s(c.rps),
        p99_text,
        f"{ms(p50)} (n={n})" if not math.isnan(p50) else "-",
        threads,
        held_text,
        cell_state(c),
    ]


def route_blocks(f: Finding, charts: Sequence[Chart]) -> list[Block]:
    """One route's part of the report."""
    head = Heading(f"`{f.label}` (`{f.route['style']}`): {f.finding}", 3)
    if f.finding == NOT_PROBED:
        return [head, Paragraph(f"Not probed: {f.advice}")]
    blocks: list[Block] = [head, Paragraph(f.advice)]
    if f.evidence:
        blocks.append(Paragraph(f"Evidence: {f.evidence}."))
    arms = [[f"`{a.arm}`", a.label, a.text] for a in f.arms]
    if arms:
        blocks.append(Table(("arm", "what it changes", "at the heaviest load"), arms))
    ordered = sorted(f.cells, key=lambda c: (c.rate is not None, c.rate or 0, c.users, c.cell_id))
    blocks.append(Table(CELL_HEADER, [cell_row(c, f) for c in ordered]))
    if f.warnings:
        blocks.append(Bullets(f.warnings))
    blocks += [Image(c.path, c.title, c.caption) for c in charts]
    return blocks


def route_charts(table: ProbeTable, f: Finding, out_dir: Path) -> list[Chart]:
    """The lab's charts for one route, from its cells."""
    rid, out = f.id, []
    agg = table.agg[table.agg["scenario"] == rid]
    if len(agg):
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
        plot_throughput(left, agg, rid, table.excluded[table.excluded["scenario"] == rid])
        plot_loop_lag(right, agg, rid)
        out.append(
            save_chart(
                fig,
                out_dir / f"probe_{rid}_loads.png",
                f"{f.label}: throughput and event-loop lag vs users",
                rid,
                "Counted cells of the app as written and of the flip arm, in the colour of the "
                "style the route ran in; X marks an excluded cell (stalled, invalid, not steady).",
            )
        )
    shown = [
        (cell_name(cell), style_key(runs_as(cell, f)), cell)
        for cell in sorted(f.cells, key=lambda c: (c.users, c.cell_id))
        if cell.rate is None
    ]
    if any(cell.user_held() for _, _, cell in shown):
        fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(shown)), 4.5), layout="constrained")
        threshold = float(table.probe.plan.get("settings", {}).get("block_ms", 10.0))
        plot_holds(ax, shown, threshold, f"{f.label}: what held the event loop, per call")
        out.append(
            save_chart(
                fig,
                out_dir / f"probe_{rid}_holds.png",
                f"{f.label}: time each call of the app's code held the loop",
                rid,
                "One box per cell (the loop sampler's holds in its window): a route whose calls "
                "sit above the threshold holds every other request of the app that long.",
            )
        )
    heavy = [c for c in f.cells if c.as_written and c.result.ok]
    deps = f.route.get("dependencies", [])
    threaded = f.route.get("threadpool") or any(d["style"].startswith("def") for d in deps)
    if heavy and threaded:
        cell = max(heavy, key=lambda c: (c.users, -c.result.repeat))
        metrics_file = table.probe.path / cell.cell_id / "metrics.csv"
        if metrics_file.is_file():
            fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
            window = (cell.result.window_start or 0.0, cell.result.window_end or 0.0)
            what = f"{f.label}: threadpool at {cell.users} users"
            plot_threadpool(ax, load_metrics(metrics_file), what, window)
            out.append(
                save_chart(
                    fig,
                    out_dir / f"probe_{rid}_threadpool.png",
                    f"{f.label}: threadpool over the heaviest cell",
                    rid,
                    "anyio's tokens in use and the tasks waiting for one, each second, in the "
                    "cell of the app as written at the heaviest load.",
                )
            )
    points = table.points[table.points["scenario"] == rid] if len(table.points) else table.points
    if len(points):
        caps = [c for c in table.capacities if c.scenario == rid]
        fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
        hockey(ax, points, table.slo, caps, rid)
        out.append(
            save_chart(
                fig,
                out_dir / f"probe_{rid}_capacity.png",
                f"{f.label}: latency vs offered rate (open loop)",
                rid,
                "The capacity search's cells: p99 solid, p50 dashed; the diamond is the "
                "capacity at the SLO.",
            )
        )
    return out


def cell_name(cell: ProbeCell) -> str:
    """`u200 flip`, `u200 t100`, `u050`: a cell in a chart's axis."""
    load = cell.cell_id.split("__")[2]
    arm = "" if cell.as_written else f" {cell.arm or f't{cell.tokens:03d}'}"
    return f"{load}{arm}"


def runs_as(cell: ProbeCell, f: Finding) -> str:
    """The style a cell ran the route in."""
    return other_style(f.route["style"]) if cell.arm == "flip" else f.route["style"]


SECTION = Probe()
