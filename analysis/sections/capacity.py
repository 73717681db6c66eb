"""The section "Capacity at the SLO (open loop)": per scenario the headline sentence, the capacity
table, the hockey-stick chart and every rate cell. It leads a report whose run has rate cells; a
run without them has no such section."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis.document import Block, Heading, Image, Paragraph, Table
from analysis.fmt import ms, rate
from analysis.judge.capacity import (
    StyleCapacity,
    capacities,
    capacity_text,
    headline,
    limit_text,
    rate_cells,
    rate_points,
    ratio_text,
    run_slo,
    slo_words,
    style_words,
)
from analysis.judge.samples import too_small
from analysis.judge.verdict import Verdicts
from analysis.load.probe import is_probe_run
from analysis.load.run import Run
from analysis.plot.capacity import capacity_caption, hockey
from analysis.plot.charts import Chart, save_chart
from analysis.sections.protocol import Place
from contract import RATE_TOLERANCE
from contract.slo import Slo

HEADING = "Capacity at the SLO (open loop)"
CAPACITY_HEADER = (
    "style",
    "capacity",
    "at capacity: sent, served",
    "first failing rate: why",
    "at it: sent, served",
    "bound",
    "x `def`",
    "repeats",
)
CELL_HEADER = (
    "style",
    "offered",
    "repeat",
    "sent",
    "sent / offered",
    "served",
    "send lag p99",
    "slots full",
    "p50",
    "p99",
    "errors",
    "SLO",
)


@dataclass(frozen=True)
class CapacityTable:
    """The rate cells with their SLO checks, the hockey-stick points and the capacities."""

    scenarios: tuple[str, ...]
    slo: Slo | None
    # Whether the run searched a capacity (capacity.csv has rows).
    searched: bool
    cells: pd.DataFrame
    points: pd.DataFrame
    capacities: tuple[StyleCapacity, ...]

    def of(self, scenario: str) -> list[StyleCapacity]:
        """The capacities of one scenario, in style order."""
        return [c for c in self.capacities if c.scenario == scenario]


def intro(slo: Slo | None, searched: bool) -> str:
    """How the section was measured and how to read it."""
    checked = (
        f"Each cell is checked against the SLO ({slo_words(slo)}; `contract.slo`): a stalled "
        "cell fails, an invalid one cannot be checked."
        if slo
        else "The run set no SLO, so no cell is checked against one."
    )
    search = (
        " Capacity: the highest offered rate that met the SLO in the run's search (capacity.csv),"
        " median over repeats with the min–max; `≥` when it is only a lower bound (every rate "
        "tried met it, or the load generator could not offer the next one validly), `<` when "
        "even the lowest rate failed. x `def`: capacity over `def`'s, itself a bound when "
        "either side is. At capacity and at the first failing rate: what the search the median "
        "stands for sent and served there."
        if searched
        else " No SLO capacity search in this run (no capacity.csv): the cells and the chart only."
    )
    return (
        "Open loop: requests arrive at a fixed offered rate whatever the server does, as real "
        "traffic does, and latency counts from each request's intended start (a request the "
        "load generator sent late waited that long too: coordinated omission corrected). A "
        "style past its capacity queues: its p99 turns up like a hockey stick. Three rates per "
        "cell: **offered**, the arrival schedule's rate; **sent** (`achieved_rps`), the requests "
        "the load generator sent per second of window; **served** (`served_rps`), the `ok` "
        "responses completed inside the window per second, what the server delivered (a run "
        "from before the column says `not recorded`). `slots full`: "
        "every connection was busy at some point, so arrivals waited for one (the server's "
        "queue, counted in latency); a cell that sent fewer than "
        f"{1 - RATE_TOLERANCE:.0%} of its arrivals while a connection was free is invalid "
        "(the load generator fell behind). " + checked + search
    )


def capacity_table(caps: Sequence[StyleCapacity]) -> Table:
    """One row per style: capacity (min–max), sent and served there, the first failing rate and
    why, sent and served there, bound, x `def`."""
    rows = []
    for c in caps:
        text = capacity_text(c)
        if c.repeats > 1 and not math.isnan(c.lo) and c.lo != c.hi:
            text += f" ({rate(c.lo)}–{rate(c.hi)})"
        repeats = str(c.repeats)
        if c.below:
            repeats += f" ({c.below} below the lowest rate)"
        at_capacity = "-" if math.isnan(c.at_capacity.offered) else c.at_capacity.text()
        at_limit = "-" if math.isnan(c.at_limit.offered) else c.at_limit.text()
        rows.append(
            [
                c.name,
                text,
                at_capacity,
                limit_text(c),
                at_limit,
                f"`{c.bound}`",
                ratio_text(c),
                repeats,
            ]
        )
    return Table(list(CAPACITY_HEADER), rows)


def _flag(x: object) -> str:
    return "yes" if bool(x) else "no"


def _errors(row: pd.Series) -> str:
    requests = row.get("requests")
    failed = (row.get("errors") or 0) + (row.get("timeouts") or 0)
    if requests is None or pd.isna(requests) or not requests:
        return "-"
    return f"{int(failed):,} ({100 * failed / requests:.1f}%)"


def _ms(x: object) -> str:
    return "-" if x is None or pd.isna(x) else ms(float(x))  # type: ignore[arg-type]


def _rate(x: object) -> str:
    return "not recorded" if x is None or pd.isna(x) else rate(float(x))  # type: ignore[arg-type]


def _slo(row: pd.Series) -> str:
    if not row["slo_status"]:
        return "-"
    why = f": {row['slo_why']}" if row["slo_why"] else ""
    status = str(row["slo_status"])
    return f"**{status}**{why}" if status == "fail" else f"{status}{why}"


def _p99(row: pd.Series) -> str:
    # Empty where the sample rule left it so (contract.PERCENTILE_RULE): the SLO column says
    # what the check used instead (the maximum).
    if pd.isna(row["p99_ms"]):
        n = row.get("latency_n")
        return too_small(n) if n is not None and not pd.isna(n) else "-"
    return ms(float(row["p99_ms"]))


def cell_table(cells: pd.DataFrame) -> Table:
    """Every rate cell of one scenario: offered, sent, served, send lag, slots, latency, SLO."""
    rows = []
    for _, r in cells.iterrows():
        name = style_words(str(r["variant"]), str(r["client"]), str(r["arm"]))
        if r["status"] != "ok":
            rows.append([name, rate(r["offered_rps"]), str(r["repeat"]), *["-"] * 8, _slo(r)])
            continue
        ratio = r["achieved_ratio"]
        p99 = _p99(r)
        if bool(r["stalled"]):
            p99 += " (stalled)"
        if not bool(r["valid"]):
            p99 += f" (invalid: {r['invalid_reason'] or 'no reason given'})"
        rows.append(
            [
                name,
                rate(r["offered_rps"]),
                str(r["repeat"]),
                rate(r["achieved_rps"]),
                "-" if pd.isna(ratio) else f"{ratio:.0%}",
                _rate(r.get("served_rps")),
                _ms(r["send_lag_p99_ms"]),
                _flag(r["slots_full"]),
                _ms(r["p50_ms"]),
                p99,
                _errors(r),
                _slo(r),
            ]
        )
    return Table(list(CELL_HEADER), rows)


class Capacity:
    """The open-loop section (rate cells, capacity.csv)."""

    key = "capacity"
    place = Place.LEAD
    reading: tuple[str, ...] = ()

    def scenarios(self, run: Run) -> list[str]:
        """The scenarios with rate cells, alphabetically (as rate_cells orders them); none in a
        probe run, whose section shows each route's capacity search itself."""
        if is_probe_run(run.path):
            return []
        return sorted({str(s) for s in run.rates["scenario"]}) if not run.rates.empty else []

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> CapacityTable:
        """The rate cells checked against the run's SLO, the points and the capacities."""
        slo = run_slo(run.manifest, run.capacity)
        cells = rate_cells(run.rates, slo)
        caps = capacities(run.capacity, cells)
        return CapacityTable(
            tuple(scenarios), slo, not run.capacity.empty, cells, rate_points(cells), tuple(caps)
        )

    def charts(self, table: CapacityTable, out_dir: Path) -> list[Chart]:
        """Per scenario: latency against offered rate per style, the SLO and each style's
        capacity (the hockey stick)."""
        out: list[Chart] = []
        for s in table.scenarios:
            mine = table.of(s)
            fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
            hockey(ax, table.points[table.points["scenario"] == s], table.slo, mine, s)
            out.append(
                save_chart(
                    fig,
                    out_dir / f"{s}_capacity.png",
                    f"{s}: latency vs offered rate",
                    s,
                    "Open loop: requests arrive at the offered rate whatever the server does; "
                    "latency counts from each request's intended start. Solid p99, dashed p50, "
                    "median over repeats; dotted: a p99 from too few samples for one (its raw "
                    "value); X = stalled, hollow = invalid (the load side set the numbers). "
                    + capacity_caption(mine),
                )
            )
        return out

    def blocks(self, table: CapacityTable, charts: Sequence[Chart]) -> list[Block]:
        """Per scenario: the headline and capacity table (or why there is none), the chart,
        every cell."""
        images = {c.scenario: c for c in charts}
        blocks: list[Block] = [Heading(HEADING), Paragraph(intro(table.slo, table.searched))]
        for s in table.scenarios:
            mine = table.of(s)
            blocks.append(Heading(f"`{s}`", 3))
            if mine:
                blocks += [Paragraph(" ".join(headline(mine))), capacity_table(mine)]
            else:
                blocks.append(
                    Paragraph(f"No capacity search on `{s}`: latency against offered rate.")
                )
            if s in images:
                blocks.append(Image(images[s].path, images[s].title, images[s].caption))
            blocks.append(cell_table(table.cells[table.cells["scenario"] == s]))
        return blocks


SECTION = Capacity()
