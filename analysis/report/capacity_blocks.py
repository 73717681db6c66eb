"""The report section "Capacity at the SLO (open loop)": per scenario the headline sentence, the
capacity table, the hockey-stick chart and every rate cell. It leads a report whose run has rate
cells; a run without them has no such section."""

import math
from collections.abc import Sequence

import pandas as pd

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
from analysis.load.run import Run
from analysis.plot.charts import Rendered
from analysis.report.document import Block, Heading, Image, Paragraph, Table
from contract import RATE_TOLERANCE
from contract.slo import Slo

HEADING = "Capacity at the SLO (open loop)"
CAPACITY_HEADER = (
    "style",
    "capacity",
    "first failing rate: why",
    "bound",
    "x `def`",
    "repeats",
)
CELL_HEADER = (
    "style",
    "offered",
    "repeat",
    "achieved",
    "achieved / offered",
    "send lag p99",
    "slots full",
    "p50",
    "p99",
    "errors",
    "SLO",
)


def intro(slo: Slo | None, searched: bool) -> str:
    """How the section was measured and how to read it."""
    judged = (
        f"Each cell is judged against the SLO ({slo_words(slo)}; `contract.slo`): a stalled "
        "cell fails, an invalid one cannot be judged."
        if slo
        else "The run set no SLO, so no cell is judged against one."
    )
    search = (
        " Capacity: the highest offered rate that met the SLO in the run's search (capacity.csv),"
        " median over repeats with the min–max; `≥` when it is only a lower bound (every rate "
        "tried met it, or the load generator could not offer the next one validly), `<` when "
        "even the lowest rate failed. x `def`: capacity over `def`'s, itself a bound when "
        "either side is."
        if searched
        else " No SLO capacity search in this run (no capacity.csv): the cells and the chart only."
    )
    return (
        "Open loop: requests arrive at a fixed offered rate whatever the server does, as real "
        "traffic does, and latency counts from each request's intended start (a request the "
        "load generator sent late waited that long too: coordinated omission corrected). A "
        "style past its capacity queues: its p99 turns up like a hockey stick. `slots full`: "
        "every connection was busy at some point, so arrivals waited for one (the server's "
        "queue, counted in latency); a cell that sent fewer than "
        f"{1 - RATE_TOLERANCE:.0%} of its arrivals while a connection was free is invalid "
        "(the load generator fell behind). " + judged + search
    )


def capacity_table(caps: Sequence[StyleCapacity]) -> Table:
    """One row per style: capacity (min–max), first failing rate and why, bound, x `def`."""
    rows = []
    for c in caps:
        text = capacity_text(c)
        if c.repeats > 1 and not math.isnan(c.lo) and c.lo != c.hi:
            text += f" ({rate(c.lo)}–{rate(c.hi)})"
        repeats = str(c.repeats)
        if c.below:
            repeats += f" ({c.below} below the lowest rate)"
        rows.append([c.name, text, limit_text(c), f"`{c.bound}`", ratio_text(c), repeats])
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


def _slo(row: pd.Series) -> str:
    if not row["slo_status"]:
        return "-"
    why = f": {row['slo_why']}" if row["slo_why"] else ""
    status = str(row["slo_status"])
    return f"**{status}**{why}" if status == "fail" else f"{status}{why}"


def cell_table(cells: pd.DataFrame) -> Table:
    """Every rate cell of one scenario: offered, achieved, send lag, slots, latency, SLO."""
    rows = []
    for _, r in cells.iterrows():
        name = style_words(str(r["variant"]), str(r["client"]), str(r["arm"]))
        if r["status"] != "ok":
            rows.append([name, rate(r["offered_rps"]), str(r["repeat"]), *["-"] * 7, _slo(r)])
            continue
        ratio = r["achieved_ratio"]
        p99 = _ms(r["p99_ms"])
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
                _ms(r["send_lag_p99_ms"]),
                _flag(r["slots_full"]),
                _ms(r["p50_ms"]),
                p99,
                _errors(r),
                _slo(r),
            ]
        )
    return Table(list(CELL_HEADER), rows)


def capacity_blocks(run: Run, rendered: Rendered | None = None) -> list[Block]:
    """The section, when the run has rate cells; else nothing."""
    if run.rates.empty:
        return []
    slo = run_slo(run.manifest, run.capacity)
    cells = rate_cells(run.rates, slo)
    caps = capacities(run.capacity, cells)
    charts = {c.scenario: c for c in (rendered.capacity if rendered else [])}
    blocks: list[Block] = [Heading(HEADING), Paragraph(intro(slo, not run.capacity.empty))]
    points = rate_points(cells)
    for s in dict.fromkeys(points["scenario"]):
        mine = [c for c in caps if c.scenario == s]
        blocks.append(Heading(f"`{s}`", 3))
        if mine:
            blocks += [Paragraph(" ".join(headline(mine))), capacity_table(mine)]
        else:
            blocks.append(Paragraph(f"No capacity search on `{s}`: latency against offered rate."))
        if s in charts:
            blocks.append(Image(charts[s].path, charts[s].title, charts[s].caption))
        blocks.append(cell_table(cells[cells["scenario"] == s]))
    return blocks


def has_capacity_section(run: Run) -> bool:
    """Whether the report shows the section."""
    return not run.rates.empty
