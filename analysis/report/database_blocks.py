"""The report section "SQLite vs PostgreSQL: does the verdict change?": per DB scenario a lead
sentence, a table of configurations (database x driver x pool x style) and a chart."""

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

import contract
from analysis.judge.databases import (
    DATABASE_NAMES,
    DEADLOCK,
    POSTGRESQL,
    database_table,
    db_rows,
    db_scenarios,
    has_postgres,
    variant_name,
)
from analysis.judge.db_verdict import db_noise, sentence
from analysis.judge.noise import Noise
from analysis.judge.verdict import fmt_ratio
from analysis.load.run import CELL_FILE, Run, RunFormatError, load_manifest
from analysis.plot.charts import Rendered
from analysis.report.document import Block, Bullets, Heading, Image, Paragraph, Table

HEADING = "SQLite vs PostgreSQL: does the verdict change?"
HEADER = (
    "database",
    "driver",
    "pool",
    "style",
    "req/s",
    "p99",
    "stalls?",
    "x `def`",
    "PostgreSQL CPU",
    "repeats",
    "arm",
)
WAIT_SCENARIO = "items_wait"


def db_wait_ms(run: Run) -> float | None:
    """`db_wait_ms` of the run's items_wait cells (cell.json settings), else the manifest's
    matrix; None when neither records it."""
    rows = db_rows(run.summary)
    for cell_id in rows.loc[rows["scenario"] == WAIT_SCENARIO, "cell_id"]:
        path = run.path / str(cell_id) / CELL_FILE
        if not path.is_file():
            continue
        try:
            settings = load_manifest(path).get("settings")
        except RunFormatError:
            continue
        if isinstance(settings, Mapping) and _number(settings.get("db_wait_ms")) is not None:
            return _number(settings.get("db_wait_ms"))
    for section in ("matrix", "settings"):
        part = run.manifest.get(section)
        if isinstance(part, Mapping) and _number(part.get("db_wait_ms")) is not None:
            return _number(part.get("db_wait_ms"))
    return None


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def intro(wait_ms: float | None) -> str:
    """What the scenarios measure and how to read the tables."""
    wait = f"{wait_ms:g} ms" if wait_ms is not None else "the matrix's `db_wait_ms`"
    return (
        "The same apps on SQLite (the base cells, as `make bench` runs them) and on PostgreSQL "
        "(named arms), in one run. `items_read`: a point read by primary key, where the database "
        "answers in well under a millisecond, so the styles differ by their own overhead. "
        f"`items_wait`: the same read behind a query that first waits {wait} inside the "
        "database (`pg_sleep` on PostgreSQL): a slow query, where each request holds a pooled "
        "connection while it waits and the pool is the scarce resource. `items_write`: one "
        "INSERT ... RETURNING and a commit. A row is a configuration: database, driver "
        "(SQLite: sqlite3 `pysqlite` in `def` and `async def` + sync lib, `aiosqlite` in "
        "`async def`; PostgreSQL: psycopg's sync API in `def` and `async def` + sync lib, "
        "psycopg's async API or asyncpg in `async def`), SQLAlchemy pool (size + overflow) "
        "and handler style. req/s: successful requests per second, mean over the counted "
        "repeats (ok, valid, steady, not stalled, and no "
        f"{contract.GAP_NOTE_S:g} s without a completion), min–max in brackets; p99 the median "
        "over them (or the highest percentile their n supports, named; `≥` a lower bound). "
        "stalls?: `deadlock` = no completion for the stall threshold, `stall N s` = the "
        "longest gap without a completion; those repeats are never a speed. x `def`: "
        "throughput over `def` on the same database and pool, with the interval min/max – "
        "max/min over the repeats. PostgreSQL CPU: the server's postmaster and backends, "
        "% of one core. The lead sentence compares each style's fastest configuration per "
        "database; a lead counts only as a verdict's does (interval above parity and median "
        "beyond the noise: max(5%, the median repeat spread of these configurations)), and the "
        "verdict changes when the set of leading styles differs between the databases."
    )


def _ratio(r: pd.Series, table: pd.DataFrame) -> str:
    if r["baseline"]:
        return "baseline" if not math.isnan(float(r["rps"])) else "baseline (no speed)"
    ratio = (float(r["ratio"]), float(r["ratio_lo"]), float(r["ratio_hi"]))
    if not math.isnan(ratio[0]):
        return fmt_ratio(ratio)
    if math.isnan(float(r["rps"])):
        return "n/a (no speed)"
    same = table[
        (table["database"] == r["database"])
        & (table["pool"] == r["pool"])
        & table["baseline"].astype(bool)
    ]
    return "n/a (`def` has no speed)" if len(same) else "n/a (no `def` at this pool)"


def _cpu(r: pd.Series) -> str:
    value = float(r["db_cpu_pct"])
    if r["database"] != POSTGRESQL:
        return "-"
    if math.isnan(value):
        return "n/a"
    return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"


def _stall(r: pd.Series) -> str:
    text = str(r["stall_text"])
    return f"**{text}**" if r["stall_kind"] == DEADLOCK else text


def _repeats(r: pd.Series) -> str:
    text = f"{int(r['counted'])} of {int(r['repeats'])} counted"
    return f"{text}; {r['flags']}" if r["flags"] else text


def scenario_table(table: pd.DataFrame, scenario: str) -> Table:
    """One row per configuration of `scenario`, SQLite first, then by pool and style."""
    part = table[table["scenario"] == scenario]
    rows = [
        [
            DATABASE_NAMES.get(str(r["database"]), str(r["database"])),
            str(r["driver"]),
            str(r["pool"]),
            variant_name(str(r["variant"])),
            str(r["rps_text"]),
            str(r["p99_text"]),
            _stall(r),
            _ratio(r, part),
            _cpu(r),
            _repeats(r),
            f"`{r['arm']}`" if r["arm"] else "base",
        ]
        for _, r in part.iterrows()
    ]
    return Table(list(HEADER), rows)


def evidence(table: pd.DataFrame, scenario: str) -> list[str]:
    """What the orchestrator saw in each stalled configuration (`stall_evidence`)."""
    part = table[(table["scenario"] == scenario) & (table["evidence"] != "")]
    return [f"{r['label']}: {r['evidence']}" for _, r in part.iterrows()]


def database_blocks(
    run: Run, rendered: Rendered | None = None, noises: Mapping[str, Noise] | None = None
) -> list[Block]:
    """The section, when the run measured a DB scenario on PostgreSQL; else nothing.

    `noises`: the verdicts' noise per scenario; only a --noise override is taken from it, the
    rest is measured on this section's configurations (the base verdicts see SQLite only).
    """
    if not has_postgres(run.summary):
        return []
    names = db_scenarios(run.summary)
    table = database_table(run.summary, names)
    charts = {c.scenario: c for c in (rendered.databases if rendered else [])}
    blocks: list[Block] = [Heading(HEADING), Paragraph(intro(db_wait_ms(run)))]
    for s in names:
        if table[table["scenario"] == s].empty:
            continue
        given = (noises or {}).get(s)
        noise = db_noise(table, s, given.value if given and given.override else None)
        blocks += [
            Heading(f"`{s}`", 3),
            Paragraph(sentence(table, s, noise) + f" The noise: {noise.text()}."),
            scenario_table(table, s),
        ]
        seen = evidence(table, s)
        if seen:
            blocks += [Paragraph("Stall evidence:"), Bullets(seen)]
        if s in charts:
            blocks.append(Image(charts[s].path, charts[s].title, charts[s].caption))
    return blocks


def has_databases_section(run: Run) -> bool:
    """Whether the report shows the section."""
    return has_postgres(run.summary)
