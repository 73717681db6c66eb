"""`make bench-pg`'s analysis: SQLite vs PostgreSQL per handler style, driver and pool."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import contract  # noqa: E402
from analysis.document import Heading, Paragraph  # noqa: E402
from analysis.judge import databases  # noqa: E402
from analysis.judge.databases import (  # noqa: E402
    database_of,
    database_table,
    db_scenarios,
    driver_of,
)
from analysis.judge.db_verdict import (  # noqa: E402
    NO,
    UNKNOWN,
    YES,
    db_noise,
    db_verdict,
    sentence,
    verdicts,
)
from analysis.judge.stalls import fix_arms, stall_scenarios  # noqa: E402
from analysis.load import load_run  # noqa: E402
from analysis.plot import styles  # noqa: E402
from analysis.plot.databases import PARTIAL_HATCH, plot_databases  # noqa: E402
from analysis.report.build import write_report  # noqa: E402
from analysis.sections.databases import (  # noqa: E402
    HEADER,
    HEADING,
    SECTION,
    db_wait_ms,
    scenario_table,
)
from analysis.sections.registry import blocks_of  # noqa: E402
from tests.analysis_fixtures import (  # noqa: E402
    DB_INVALID_RPS,
    DB_STALL_RPS,
    cell_record,
    db_plan,
    db_run_rows,
    section_charts_only,
    write_db_run,
    write_run,
)
from tests.test_analysis_stalls import frame  # noqa: E402

DB_COLUMNS = ("db", "db_pool_size", "db_max_overflow", "db_cpu_pct")


def config(table: pd.DataFrame, scenario: str, db: str, pool: str, variant: str) -> pd.Series:
    part = table[
        (table["scenario"] == scenario)
        & (table["database"] == database_of(db))
        & (table["driver"] == driver_of(db))
        & (table["pool"] == pool)
        & (table["variant"] == variant)
    ]
    assert len(part) == 1, part
    return part.iloc[0]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return database_table(frame(db_run_rows()))


def test_configurations_are_database_driver_pool_and_style(table: pd.DataFrame) -> None:
    assert db_scenarios(frame(db_run_rows())) == ["items_read", "items_write", "items_wait"]
    read = table[table["scenario"] == "items_read"]
    assert len(read) == 10
    assert set(read["users"]) == {200}
    # SQLite first, then PostgreSQL by pool, `def` first within a pool, psycopg before asyncpg.
    assert list(
        zip(read["database"], read["pool"], read["variant"], read["driver"], strict=True)
    ) == [
        ("sqlite", "5+10", "sync", "pysqlite"),
        ("sqlite", "5+10", "async", "aiosqlite"),
        ("sqlite", "5+10", "blocking", "pysqlite"),
        ("postgresql", "5+10", "sync", "psycopg"),
        ("postgresql", "5+10", "async", "psycopg"),
        ("postgresql", "5+10", "async", "asyncpg"),
        ("postgresql", "5+10", "blocking", "psycopg"),
        ("postgresql", "40+0", "sync", "psycopg"),
        ("postgresql", "40+0", "async", "psycopg"),
        ("postgresql", "40+0", "async", "asyncpg"),
    ]
    row = config(table, "items_read", "postgresql+asyncpg", "40+0", "async")
    assert row["label"] == "PostgreSQL, asyncpg, pool 40+0, `async def`"
    assert row["arm"] == "pg_asyncpg_pool40"


def test_numbers_are_means_with_min_max_and_ratios_to_def_on_the_same_pool(
    table: pd.DataFrame,
) -> None:
    base = config(table, "items_wait", "postgresql+psycopg", "40+0", "sync")
    assert base["baseline"] and base["ratio"] == 1.0
    assert (base["rps"], base["rps_lo"], base["rps_hi"]) == (1510.0, 1500.0, 1520.0)
    assert base["rps_text"] == "1,510/s (1,500/s–1,520/s)"
    assert base["db_cpu_pct"] == pytest.approx((75.0 + 76.0) / 2)
    apg = config(table, "items_wait", "postgresql+asyncpg", "40+0", "async")
    # Against `def` of pool 40+0 (another arm), with the verdicts' interval.
    assert apg["ratio"] == pytest.approx(1925 / 1510)
    assert apg["ratio_lo"] == pytest.approx(1900 / 1520)
    assert apg["ratio_hi"] == pytest.approx(1950 / 1500)
    # Not against SQLite's `def`, nor the pool 5+10 one: on 5+10 `def` deadlocked, so n/a.
    small = config(table, "items_wait", "postgresql+asyncpg", "5+10", "async")
    assert small["rps"] == 545.0 and math.isnan(small["ratio"])
    lite = config(table, "items_write", "sqlite+aiosqlite", "5+10", "async")
    assert lite["ratio"] == pytest.approx(720 / 710)
    assert math.isnan(config(table, "items_write", "sqlite+pysqlite", "5+10", "sync")["db_cpu_pct"])


def test_p99_follows_the_sample_count_rule(table: pd.DataFrame) -> None:
    # 2 x 1,530 requests: enough for a p99; 2 x 445 = 880 is not, so p95 is shown, named.
    assert config(table, "items_read", "postgresql+psycopg", "40+0", "sync")["p99_text"] == (
        "262 ms"
    )
    wait = config(table, "items_wait", "sqlite+aiosqlite", "5+10", "async")
    assert wait["p99_text"].startswith("p95 (n=880)")
    assert contract.min_samples(99) > 880


def test_stalled_and_invalid_repeats_are_never_speeds(table: pd.DataFrame) -> None:
    stalled = config(table, "items_read", "sqlite+pysqlite", "5+10", "sync")
    assert stalled["counted"] == 0 and math.isnan(stalled["rps"])
    assert stalled["rps_text"] == "n/a" and stalled["p99_text"] == "n/a"
    assert stalled["stall_kind"] == "stall" and stalled["stall_text"] == "stall 10.3 s"
    assert stalled["flags"] == "2 of 2 stalled"
    assert "10.3 s" in stalled["evidence"]
    dead = config(table, "items_read", "postgresql+psycopg", "5+10", "sync")
    assert dead["stall_text"] == "deadlock" and math.isnan(dead["rps"])
    invalid = config(table, "items_write", "postgresql+psycopg", "5+10", "blocking")
    assert invalid["flags"] == "2 of 2 invalid" and math.isnan(invalid["rps"])
    # One of two repeats stalled: the other is the speed, the stall is named.
    half = config(table, "items_read", "postgresql+psycopg", "5+10", "blocking")
    assert (half["counted"], half["rps"]) == (1, 600.0)
    assert half["stall_text"] == "stall 10.3 s (1 of 2 repeats)"
    numbers = pd.concat([table["rps"], table["rps_lo"], table["rps_hi"]])
    assert not numbers.isin([DB_STALL_RPS, DB_INVALID_RPS]).any()


def test_noise_is_the_verdicts_rule(table: pd.DataFrame) -> None:
    noise = db_noise(table, "items_read")
    counted = table[(table["scenario"] == "items_read") & (table["counted"] >= 2)]
    spreads = (counted["rps_hi"] - counted["rps_lo"]) / counted["rps"]
    assert noise.cells == len(counted) == 7
    assert noise.measured == pytest.approx(float(spreads.median()))
    assert noise.value == max(contract.MIN_NOISE, noise.measured)
    assert db_noise(table, "items_read", override=0.2).value == 0.2


def test_the_verdict_changes_on_items_read(table: pd.DataFrame) -> None:
    sqlite, pg, change = verdicts(table, "items_read", 0.05)
    assert sqlite.clear and sqlite.winners == ("blocking",)
    assert pg.clear and pg.winners == ("sync",)
    assert pg.leader is not None and pg.leader["pool"] == "40+0"
    # Runner-up: `async def`'s best configuration (asyncpg, pool 40+0), not the single repeat.
    assert pg.runner_up is not None and pg.runner_up["driver"] == "asyncpg"
    assert pg.ratio == pytest.approx((1530 / 1325, 1500 / 1350, 1560 / 1300))
    assert change.answer == YES
    assert "`def` with psycopg (pool 40+0) leads on PostgreSQL" in change.text
    assert "`async def` + sync lib with pysqlite (pool 5+10) leads on SQLite" in change.text
    text = sentence(table, "items_read", 0.05)
    assert text.startswith(
        "`items_read` at 200 users: does the verdict change from SQLite to PostgreSQL? **yes**"
    )
    assert "no speed for `def` (pysqlite, pool 5+10): stall 10.3 s" in text
    assert "`def` (psycopg, pool 5+10): deadlock" in text
    assert "one counted repeat, not judged" in text
    # A wider noise than the lead: no clear leader on PostgreSQL, so the answer follows.
    _, pg_wide, change_wide = verdicts(table, "items_read", 0.5)
    assert not pg_wide.clear and change_wide.answer == YES
    assert "no style leads beyond the noise on PostgreSQL" in change_wide.text


def test_the_verdict_holds_on_items_wait_and_items_write(table: pd.DataFrame) -> None:
    sqlite, pg, change = verdicts(table, "items_wait", 0.05)
    assert sqlite.winners == pg.winners == ("async",)
    assert change.answer == NO
    assert change.text == (
        "`async def` leads on both: on SQLite with aiosqlite (pool 5+10), on PostgreSQL with "
        "asyncpg (pool 40+0)"
    )
    sqlite, pg, change = verdicts(table, "items_write", 0.05)
    assert not sqlite.clear and not pg.clear
    assert change.answer == NO
    assert "no style leads beyond the noise on either database" in change.text
    # The invalid 5,000 req/s never leads.
    assert pg.leader is not None and pg.leader["variant"] != "blocking"
    assert "5,000" not in sentence(table, "items_write", 0.05)


def test_one_repeat_and_missing_database_cannot_decide() -> None:
    plan = {k: v[:1] for k, v in db_plan().items() if k[0] == "items_wait"}
    table = database_table(frame(db_run_rows(plan)))
    pg = db_verdict(table, "items_wait", "postgresql", 0.05)
    assert pg.one_repeat and not pg.clear
    assert "one repeat: no interval" in sentence(table, "items_wait", 0.05)
    only_pg = {k: v for k, v in db_plan().items() if k[0] == "items_write" and k[2]}
    table = database_table(frame(db_run_rows(only_pg)))
    _, _, change = verdicts(table, "items_write", 0.05)
    assert change.answer == UNKNOWN and change.text == "SQLite has no cell at this load"


def test_old_runs_and_sqlite_only_runs_have_no_section(tmp_path: Path) -> None:
    # An orchestrator from before PostgreSQL: no `db` columns at all.
    old = load_run(write_db_run(tmp_path, name="old", drop=DB_COLUMNS))
    assert "db" in old.missing_columns
    assert db_scenarios(old.summary) == []
    assert database_table(old.summary).empty
    assert blocks_of(SECTION, old) == []
    md = write_report(old.path, reference=None, draw=False).markdown.read_text()
    assert HEADING not in md
    # The default fixture run (no DB scenario) and a run on SQLite only.
    assert blocks_of(SECTION, load_run(write_run(tmp_path, raw=False))) == []
    lite = [r for r in db_run_rows() if not r["arm"]]
    assert db_scenarios(frame(lite)) == []
    assert blocks_of(SECTION, load_run(write_db_run(tmp_path, lite, name="lite"))) == []


def test_postgres_arms_are_not_fixes_in_the_stalls_section() -> None:
    summary = frame(db_run_rows())
    assert fix_arms(summary) == []
    assert stall_scenarios(summary) == []


def test_section_tables_and_lead(tmp_path: Path) -> None:
    run = load_run(write_db_run(tmp_path))
    blocks = blocks_of(SECTION, run)
    assert blocks[0] == Heading(HEADING)
    assert "waits 20 ms inside the database" in blocks[1].text  # type: ignore[union-attr]
    titles = [b.text for b in blocks if isinstance(b, Heading) and b.level == 3]
    assert titles == ["`items_read`", "`items_write`", "`items_wait`"]
    leads = [b.text for b in blocks if isinstance(b, Paragraph) and "does the verdict" in b.text]
    assert [t.split("? ", 1)[1].split(":")[0] for t in leads] == ["**yes**", "**no**", "**no**"]
    md = scenario_table(database_table(run.summary), "items_read")
    assert list(md.header) == list(HEADER)
    assert md.rows[0] == [
        "SQLite",
        "pysqlite",
        "5+10",
        "`def`",
        "n/a",
        "n/a",
        "stall 10.3 s",
        "baseline (no speed)",
        "-",
        "0 of 2 counted; 2 of 2 stalled",
        "base",
    ]
    assert md.rows[3][6] == "**deadlock**"
    assert md.rows[5][:5] == [
        "PostgreSQL",
        "asyncpg",
        "5+10",
        "`async def`",
        "1,225/s (1,200/s–1,250/s)",
    ]
    assert md.rows[5][7] == "n/a (`def` has no speed)"
    assert md.rows[5][8] == "61%"
    pool40 = md.rows[9]
    assert pool40[7] == "x0.87 (0.83-0.90)" and pool40[10] == "`pg_asyncpg_pool40`"


def test_db_wait_ms_from_cell_json_then_manifest(tmp_path: Path) -> None:
    run = load_run(write_db_run(tmp_path))
    assert db_wait_ms(run) == 20
    row = next(r for _, r in run.summary.iterrows() if str(r["cell_id"]).startswith("items_wait"))
    record = cell_record(row.to_dict(), settings={"db_wait_ms": 35})
    (run.path / str(row["cell_id"]) / "cell.json").write_text(json.dumps(record))
    assert db_wait_ms(run) == 35
    # A cell.json the contract's record rejects is skipped, never guessed at.
    (run.path / str(row["cell_id"]) / "cell.json").write_text(json.dumps({"settings": {}}))
    assert db_wait_ms(run) == 20
    bare = load_run(write_db_run(tmp_path, name="bare", db_wait_ms=None))
    assert db_wait_ms(bare) is None
    assert "the matrix's `db_wait_ms`" in blocks_of(SECTION, bare)[1].text  # type: ignore[union-attr]


def test_report_has_the_section_and_its_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section_charts_only(monkeypatch)
    run_dir = write_db_run(tmp_path)
    files = write_report(run_dir, reference=None)
    md = files.markdown.read_text()
    section = md[md.index(f"## {HEADING}") :]
    section = section[: section.index("\n## ", 5)]
    for s in ("items_read", "items_write", "items_wait"):
        assert f"### `{s}`" in section
        assert f"]({'charts'}/{s}_databases.png)" in section
        assert run_dir / "charts" / f"{s}_databases.png" in files.charts
    assert "| database | driver | pool | style | req/s | p99 | stalls? |" in section
    assert "The noise: " in section and "Stall evidence:" in section
    # Stalled and invalid repeats never appear as a speed.
    assert "5,000/s" not in section and f"{DB_STALL_RPS:.1f}/s" not in section
    assert "## `def` stalls and deadlocks" not in md
    html = files.html.read_text()
    assert HEADING in html and "data:image/png;base64" in html


def test_chart_bars_whiskers_and_no_speed_marks(table: pd.DataFrame) -> None:
    fig, ax = plt.subplots()
    plot_databases(ax, table, "items_read")
    assert ax.get_title() == "items_read at 200 users: throughput by database, driver and pool"
    assert ax.get_ylabel() == "throughput (successful requests/s)"
    assert "driver" in ax.get_xlabel()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["pysqlite", "aiosqlite", "pysqlite", "psycopg", "psycopg", "asyncpg"] + [
        "psycopg",
        "psycopg",
        "psycopg",
        "asyncpg",
    ]
    bars = [p for p in ax.patches if p.get_height() > 0]
    # 8 configurations with a speed; the 2 without one have no bar.
    assert [round(p.get_height()) for p in bars] == [1020, 2650, 925, 1225, 600, 1530, 965, 1325]
    edges = [matplotlib.colors.to_hex(p.get_edgecolor()).upper() for p in bars]
    assert edges[0] == styles.colour("async") and edges[1] == styles.colour("blocking")
    assert edges[5] == styles.colour("sync")
    hatched = [p for p in bars if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_hatch() == PARTIAL_HATCH
    assert round(hatched[0].get_height()) == 600
    texts = [t.get_text() for t in ax.texts]
    assert "no speed:\nstall 10.3 s" in texts and "no speed:\ndeadlock" in texts
    assert {"SQLite, pool 5+10", "PostgreSQL, pool 5+10", "PostgreSQL, pool 40+0"} <= set(texts)
    assert ax.get_ylim()[1] > 1560  # the highest whisker fits
    assert ax.get_legend() is not None
    plt.close(fig)


def test_the_ratio_baseline_is_a_def_with_a_speed_and_repeated_labels_name_their_arm() -> None:
    def row(arm: str, variant: str, rps: float) -> dict[str, object]:
        return {
            "database": "postgresql",
            "pool": "5+10",
            "variant": variant,
            "arm": arm,
            "rps": rps,
            "label": f"PostgreSQL, psycopg, pool 5+10, {variant}",
        }

    stalled, fixed = row("pg", "sync", math.nan), row("pg_statement", "sync", 800.0)
    other_pool = {**row("pg_pool40", "sync", 900.0), "pool": "40+0"}
    async_ = row("pg", "async", 900.0)
    part = [stalled, fixed, other_pool, async_]
    assert databases.baseline(part, async_) is fixed  # `def` as written stalls: its fix
    assert databases.baseline(part, stalled) is fixed
    assert databases.baseline([stalled, async_], async_) is stalled  # no `def` has a speed
    databases._name_the_arm_where_labels_repeat(part)
    assert stalled["label"].endswith("arm `pg`") and fixed["label"].endswith("arm `pg_statement`")
    assert async_["label"] == "PostgreSQL, psycopg, pool 5+10, async"
