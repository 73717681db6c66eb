"""The section "`def` stalls and deadlocks" (`make bench-stalls`): per scenario a table of the
default `def` app, each fix (a named arm, or `def` with another client) and `async def`, the
advice computed from it and a chart; then what each fix changes."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import contract
from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table
from analysis.fmt import ms
from analysis.judge.stalls import (
    CLIENT_FIXES,
    DEADLOCK,
    FIX,
    FIXES,
    advice,
    cells_of,
    fix_settings,
    row_labels,
    stall_scenarios,
    stall_table,
    top_threads,
)
from analysis.judge.verdict import Verdicts
from analysis.load.run import Run
from analysis.plot.charts import Chart, save_chart
from analysis.plot.stalls import plot_stall_rps
from analysis.sections.protocol import Place

HEADING = "`def` stalls and deadlocks"


@dataclass(frozen=True)
class StallsTable:
    """analysis.judge.stalls.stall_table of the section's scenarios, and each arm's settings."""

    scenarios: tuple[str, ...]
    frame: pd.DataFrame
    # Arm name -> its server settings as the manifest recorded them.
    settings: dict[str, str] = field(default_factory=dict)

    def shown(self) -> list[str]:
        """The scenarios with rows, in order."""
        return [s for s in self.scenarios if not self.frame[self.frame["scenario"] == s].empty]


def intro() -> str:
    """How to read the section's tables."""
    return (
        "FastAPI's `def` endpoints as the docs write them (the default row), the same `sync` "
        "app with one server setting changed per row (a named arm, all else equal) and "
        "`async def` as the reference. **stalls?**: `deadlock` = no request completed for the "
        "stall threshold (`stall_s`) with requests in flight, and the cell was cut off there; "
        f"`stall N s` = the longest time without a completion was N s "
        f"(>= {contract.GAP_NOTE_S:g} s), after which requests completed or failed again "
        "(failed requests, errors and timeouts, are counted with their median latency); `no` = "
        f"never {contract.GAP_NOTE_S:g} s without a completion. req/s: successful requests per "
        "second, median over the repeats (min–max when several), stalled repeats included; "
        "p99 over successful and still-in-flight requests, `≥` when it rests on the latter (a "
        "lower bound). threads: what the server's threads were doing in a py-spy dump taken "
        "when nothing had completed for a few seconds, at the highest load that has one. These "
        "arms are never in the verdicts."
    )


def stall_cell(cell: pd.Series) -> str:
    """`**deadlock**`, `stall 10.2 s; 57 errors (p50 10,002 ms)`, `no`."""
    text = str(cell["outcome"])
    if str(cell["outcome_kind"]) == DEADLOCK:
        text = f"**{text}**"
    errors = cell.get("errors")
    if errors is not None and not pd.isna(errors) and errors > 0:
        text += f"; {errors:,.0f} error{'s' if errors != 1 else ''}"
        p50 = cell.get("error_p50_ms")
        if p50 is not None and not pd.isna(p50):
            text += f" (p50 {ms(float(p50))})"
    return text


def scenario_table(table: pd.DataFrame, scenario: str) -> Table:
    """One row per fix; per load: stalls?, req/s, p99; then the threads at the highest load."""
    part = table[table["scenario"] == scenario]
    levels = sorted(int(u) for u in part["users"].unique())
    rows = []
    any_threads = False
    for row in row_labels(table, scenario):
        cells = cells_of(table, row)
        name = row.label + (f" (`{row.arm}`)" if row.arm else "")
        values = [name]
        for users in levels:
            if users not in cells.index:
                values += ["not run", "-", "-"]
                continue
            cell = cells.loc[users]
            values += [stall_cell(cell), str(cell["rps_text"]), str(cell["p99_text"])]
        at, threads = top_threads(table, row)
        any_threads |= bool(threads)
        if threads and at != levels[-1]:
            threads = f"at {at} users: {threads}"
        values.append(threads or "-")
        rows.append(values)
    header = ["fix (arm)"]
    for users in levels:
        header += [f"{users} users: stalls?", f"{users} users: req/s", f"{users} users: p99"]
    header.append("threads (py-spy, highest load dumped)")
    if not any_threads:
        # No cell was dumped: the column would be all dashes.
        header = header[:-1]
        rows = [r[:-1] for r in rows]
    return Table(header, rows)


def fix_bullets(table: pd.DataFrame, settings: dict[str, str]) -> list[str]:
    """What each fix in the tables changes, and the server setting it ran with."""
    out = []
    seen: set[tuple[str, str]] = set()
    for scenario in dict.fromkeys(table["scenario"]):
        for row in row_labels(table, str(scenario)):
            if row.kind != FIX or (row.arm, row.style) in seen:
                continue
            seen.add((row.arm, row.style))
            fix = FIXES.get(row.arm) if row.arm else CLIENT_FIXES.get(row.style)
            what = fix.detail if fix else "not described in analysis.judge.stalls.FIXES"
            name = f"{row.label} (`{row.arm}`)" if row.arm else f"{row.label} (`{row.style}`)"
            setting = settings.get(row.arm, "")
            out.append(f"{name}: {what}" + (f"; server setting {setting}" if setting else ""))
    return out


class Stalls:
    """The stalls section: runs with fix arms (e.g. `make bench-stalls`)."""

    key = "stalls"
    place = Place.FINDINGS
    reading: tuple[str, ...] = (
        "Stalls charts (runs with fix arms, e.g. `make bench-stalls`): throughput of the default "
        "`def` app, each fix and `async def` at each load, in the style's colour; a hatched bar "
        "stalled (xx: a deadlock; //: a shorter gap without a completion).",
    )

    def scenarios(self, run: Run) -> list[str]:
        """Scenarios with cells of a fix arm (analysis.judge.stalls.stall_scenarios)."""
        return stall_scenarios(run.summary)

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> StallsTable:
        """The stall table of those scenarios, and the arms' settings from the manifest."""
        frame = stall_table(run.summary, list(scenarios))
        return StallsTable(tuple(scenarios), frame, fix_settings(run.manifest))

    def charts(self, table: StallsTable, out_dir: Path) -> list[Chart]:
        """Per scenario: throughput of the default, each fix and `async def`, one panel per
        load, stalled cells hatched."""
        out: list[Chart] = []
        frame = table.frame
        for s in table.shown():
            part = frame[frame["scenario"] == s]
            levels = sorted(int(u) for u in part["users"].unique())
            rows = part[["arm", "style"]].drop_duplicates()
            fig, axes = plt.subplots(
                1,
                len(levels),
                figsize=(4.5 * len(levels) + 3, 1.2 + 0.45 * len(rows)),
                sharey=True,
                layout="constrained",
                squeeze=False,
            )
            for i, (ax, users) in enumerate(zip(axes[0], levels, strict=True)):
                plot_stall_rps(ax, frame, s, users, legend=i == len(levels) - 1)
            fig.suptitle(f"{s}: throughput of `def`, each fix and `async def`, by load")
            out.append(
                save_chart(
                    fig,
                    out_dir / f"{s}_stalls.png",
                    f"{s}: throughput by fix and load",
                    s,
                    "Median successful requests/s over the repeats (whiskers: min-max), one "
                    "panel per load, in each style's colour; hatched bars stalled (xx: a "
                    "deadlock, no completion for the stall threshold; //: a gap of "
                    f"{contract.GAP_NOTE_S:g} s or more without a completion), their throughput "
                    "is what completed around it.",
                )
            )
        return out

    def blocks(self, table: StallsTable, charts: Sequence[Chart]) -> list[Block]:
        """The intro, per scenario its table, advice and chart, then what each fix changes."""
        images = {c.scenario: c for c in charts}
        blocks: list[Block] = [Heading(HEADING), Paragraph(intro())]
        for s in table.shown():
            blocks += [
                Heading(f"`{s}`", 3),
                scenario_table(table.frame, s),
                Paragraph(advice(table.frame, s)),
            ]
            if s in images:
                blocks.append(Image(images[s].path, images[s].title, images[s].caption))
        bullets = fix_bullets(table.frame, table.settings)
        if bullets:
            blocks += [Heading("What each fix changes", 3), Bullets(bullets)]
        return blocks


SECTION = Stalls()
