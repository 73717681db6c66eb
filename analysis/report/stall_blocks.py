"""The report section on `def` stalls and deadlocks: one table per scenario, advice, a chart."""

import pandas as pd

import contract
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
from analysis.load.run import Run
from analysis.plot.charts import Rendered
from analysis.report.document import Block, Bullets, Heading, Image, Paragraph, Table

HEADING = "`def` stalls and deadlocks"


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


def stall_blocks(run: Run, rendered: Rendered | None = None) -> list[Block]:
    """The section, when the run has fix arms (e.g. `make bench-stalls`); else nothing."""
    names = stall_scenarios(run.summary)
    if not names:
        return []
    table = stall_table(run.summary, names)
    charts = {c.scenario: c for c in (rendered.stalls if rendered else [])}
    blocks: list[Block] = [Heading(HEADING), Paragraph(intro())]
    for s in names:
        if table[table["scenario"] == s].empty:
            continue
        blocks += [
            Heading(f"`{s}`", 3),
            scenario_table(table, s),
            Paragraph(advice(table, s)),
        ]
        if s in charts:
            blocks.append(Image(charts[s].path, charts[s].title, charts[s].caption))
    bullets = fix_bullets(table, fix_settings(run.manifest))
    if bullets:
        blocks += [Heading("What each fix changes", 3), Bullets(bullets)]
    return blocks


def has_stalls_section(run: Run) -> bool:
    """Whether the report shows the section."""
    return bool(stall_scenarios(run.summary))
