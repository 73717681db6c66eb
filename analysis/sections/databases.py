"""The section "SQLite vs PostgreSQL: does the verdict change?" (`make bench-pg`): per DB scenario
a lead sentence, a table of configurations (database x driver x pool x style) and a chart."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

import contract
from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table
from analysis.judge.databases import (
    DATABASE_NAMES,
    DEADLOCK,
    POSTGRESQL,
    database_table,
    db_rows,
    db_scenarios,
)
from analysis.judge.db_verdict import db_noise, sentence
from analysis.judge.noise import Noise
from analysis.judge.verdict import Verdicts, fmt_ratio
from analysis.load.run import CELL_FILE, Run, RunFormatError, load_cell
from analysis.plot.charts import Chart, save_chart
from analysis.plot.databases import plot_databases
from analysis.sections.protocol import Place
from analysis.vocabulary import ASYNC, BLOCKING, SYNC, variant_words

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


@dataclass(frozen=True)
class DatabasesTable:
    """analysis.judge.databases.database_table of the DB scenarios, each one's noise, and the
    query wait of `items_wait`."""

    scenarios: tuple[str, ...]
    frame: pd.DataFrame
    noises: dict[str, Noise]
    wait_ms: float | None

    def shown(self) -> list[str]:
        """The scenarios with configurations, in order."""
        return [s for s in self.scenarios if not self.frame[self.frame["scenario"] == s].empty]


def db_wait_ms(run: Run) -> float | None:
    """`db_wait_ms` of the run's items_wait cells (cell.json settings), else the manifest's
    matrix; None when neither records it."""
    rows = db_rows(run.summary)
    for cell_id in rows.loc[rows["scenario"] == WAIT_SCENARIO, "cell_id"]:
        path = run.path / str(cell_id) / CELL_FILE
        if not path.is_file():
            continue
        try:
            settings = load_cell(path).settings
        except RunFormatError:
            continue
        if _number(settings.get("db_wait_ms")) is not None:
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
    sync_styles = f"{variant_words(SYNC)} and {variant_words(BLOCKING)}"
    return (
        "The same apps on SQLite (the base cells, as `make bench` runs them) and on PostgreSQL "
        "(named arms), in one run. `items_read`: a point read by primary key, where the database "
        "answers in well under a millisecond, so the styles differ by their own overhead. "
        f"`items_wait`: the same read behind a query that first waits {wait} inside the "
        "database (`pg_sleep` on PostgreSQL): a slow query, where each request holds a pooled "
        "connection while it waits and the pool is the scarce resource. `items_write`: one "
        "INSERT ... RETURNING and a commit. A row is a configuration: database, driver "
        f"(SQLite: sqlite3 `pysqlite` in {sync_styles}, `aiosqlite` in "
        f"{variant_words(ASYNC)}; PostgreSQL: psycopg's sync API in {sync_styles}, "
        "psycopg's async API or asyncpg in `async def`), SQLAlchemy pool (size + overflow) "
        "and handler style. req/s: successful requests per second, median over the counted "
        "repeats (ok, valid, steady, not stalled, and no "
        f"{contract.GAP_NOTE_S:g} s without a completion), min–max in brackets; p99 the median "
        "over them (or the highest percentile their n supports, named; `≥` a lower bound). "
        "stalls?: `deadlock` = no completion for the stall threshold, `stall N s` = the "
        "longest gap without a completion; those repeats are never a speed. x `def`: "
        "throughput over `def` on the same database and pool, with the interval min/max – "
        "max/min over the repeats. PostgreSQL CPU: the server's postmaster and backends, "
        "% of one core, median over the counted repeats. The lead sentence compares each "
        "style's fastest configuration per database; a lead counts only as a verdict's does "
        "(interval above parity and median beyond the noise: max(5%, the median repeat spread "
        "of these configurations)), and the verdict changes when the set of leading styles "
        "differs between the databases."
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
            variant_words(str(r["variant"])),
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


class Databases:
    """The SQLite vs PostgreSQL section: a DB scenario measured on PostgreSQL."""

    key = "databases"
    place = Place.FINDINGS
    reading: tuple[str, ...] = (
        "SQLite vs PostgreSQL charts (`make bench-pg`): one bar per database x driver x pool x "
        "style in the style's colour, grouped by database and pool; whiskers the min-max over "
        "the counted repeats; a hatched bar had repeats not counted; an X at zero is a "
        "configuration with no counted repeat (stalled, invalid or not steady): no speed is "
        "shown for it.",
    )

    def scenarios(self, run: Run) -> list[str]:
        """DB scenarios with PostgreSQL cells (analysis.judge.databases.db_scenarios)."""
        return db_scenarios(run.summary)

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> DatabasesTable:
        """The configurations, and per scenario the verdicts' noise rule measured on them
        (only a --noise override is taken from the verdicts, which see SQLite only)."""
        frame = database_table(run.summary, list(scenarios))
        noises = {}
        for s in scenarios:
            given = decided.noises.get(s)
            noises[s] = db_noise(frame, s, given.value if given and given.override else None)
        return DatabasesTable(tuple(scenarios), frame, noises, db_wait_ms(run))

    def charts(self, table: DatabasesTable, out_dir: Path) -> list[Chart]:
        """Per DB scenario: throughput per database x driver x pool x style."""
        out: list[Chart] = []
        for s in table.shown():
            part = table.frame[table.frame["scenario"] == s]
            width = max(8.0, 0.75 * len(part) + 4.5)
            fig, ax = plt.subplots(figsize=(width, 5), layout="constrained")
            plot_databases(ax, table.frame, s)
            out.append(
                save_chart(
                    fig,
                    out_dir / f"{s}_databases.png",
                    f"{s}: throughput by database, driver and pool",
                    s,
                    "Median successful requests/s over the counted repeats (whiskers: min-max), "
                    "one bar per configuration in its style's colour, grouped by database and "
                    "pool (size + overflow); hatched: some repeats not counted; X: no counted "
                    "repeat (stalled, invalid or not steady), so no speed.",
                )
            )
        return out

    def blocks(self, table: DatabasesTable, charts: Sequence[Chart]) -> list[Block]:
        """The intro, per scenario its sentence, table, stall evidence and chart."""
        images = {c.scenario: c for c in charts}
        blocks: list[Block] = [Heading(HEADING), Paragraph(intro(table.wait_ms))]
        for s in table.shown():
            noise = table.noises[s]
            blocks += [
                Heading(f"`{s}`", 3),
                Paragraph(sentence(table.frame, s, noise) + f" The noise: {noise.text()}."),
                scenario_table(table.frame, s),
            ]
            seen = evidence(table.frame, s)
            if seen:
                blocks += [Paragraph("Stall evidence:"), Bullets(seen)]
            if s in images:
                blocks.append(Image(images[s].path, images[s].title, images[s].caption))
        return blocks


SECTION = Databases()
