"""Issue 9's analysis: `def` stalls and deadlocks with each fix as an arm, httpx2, `threads`,
and the threadpool sweep over several scenarios; on synthetic summaries."""

import math
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import contract  # noqa: E402
from analysis import vocabulary  # noqa: E402
from analysis.judge.observer import observer_arms, observer_effect  # noqa: E402
from analysis.judge.stalls import (  # noqa: E402
    DEADLOCK,
    FIX,
    FIXES,
    NO,
    REFERENCE,
    STALL,
    advice,
    fix_arms,
    fix_settings,
    row_id,
    stall_scenarios,
    stall_table,
)
from analysis.judge.sweep import (  # noqa: E402
    aggregate_sweep,
    gaps,
    sweep_outcomes,
    sweep_scenarios,
    sweep_table,
)
from analysis.load import load_run, load_summary  # noqa: E402
from analysis.load.derive import derive  # noqa: E402
from analysis.plot import styles  # noqa: E402
from analysis.plot.stalls import plot_stall_rps  # noqa: E402
from analysis.report.build import write_report  # noqa: E402
from analysis.sections.registry import blocks_of  # noqa: E402
from analysis.sections.stalls import HEADING, SECTION, scenario_table  # noqa: E402
from tests.analysis_fixtures import (  # noqa: E402
    DB_DIAGNOSIS,
    MULTI_SWEEP_SCENARIOS,
    STREAM_DIAGNOSIS,
    SUMMARY_HEADER,
    section_charts_only,
    stall_plan,
    stall_rows,
    write_multi_sweep_run,
    write_run,
    write_stalls_run,
    write_summary,
)


def frame(rows: list[dict], drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows as the orchestrator writes them, typed and derived as load_run does it (a CSV round
    trip through the loader)."""
    header = [c for c in SUMMARY_HEADER if c not in drop]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_summary(Path(tmp) / "summary.csv", rows, header)
        summary, missing = load_summary(path)
    return derive(summary, missing)[0]


def table_of(summary: pd.DataFrame, scenario: str):  # type: ignore[no-untyped-def]
    """One swept scenario's table, as the threadpool section computes it."""
    return sweep_table(aggregate_sweep(summary), sweep_outcomes(summary), scenario)


def cell_of(table: pd.DataFrame, scenario: str, arm: str, style: str, users: int) -> pd.Series:
    part = table[
        (table["scenario"] == scenario)
        & (table["arm"] == arm)
        & (table["style"] == style)
        & (table["users"] == users)
    ]
    assert len(part) == 1, part
    return part.iloc[0]


# --- loading: the `threads` column and the httpx2 client ----------------------------------------


def test_summary_with_threads_and_httpx2_loads() -> None:
    s = frame(stall_rows())
    assert "sync (httpx2)" in set(s["style"])
    dumped = s[s["threads"] != ""]
    assert set(dumped["threads"]) == {DB_DIAGNOSIS, STREAM_DIAGNOSIS}
    # Every deadlocked cell carries its dump; the clean ones none.
    assert (s.loc[s["stalled"], "threads"] != "").all()


def test_summary_without_threads_still_loads(tmp_path: Path) -> None:
    rows = stall_rows()
    header = [c for c in SUMMARY_HEADER if c != "threads"]
    run = tmp_path / "old"
    run.mkdir()
    write_summary(run / "summary.csv", rows, header)
    (run / "manifest.json").write_text("{}")
    loaded = load_run(run)
    assert "threads" in loaded.missing_columns
    table = stall_table(loaded.summary)
    assert (table["threads"] == "").all()
    # No dump anywhere: the table drops the column rather than show only dashes.
    assert not any("threads" in h for h in scenario_table(table, "items_read").header)


def test_httpx2_has_its_own_colour_label_and_place() -> None:
    style = vocabulary.style_of("sync", "httpx2")
    assert style == "sync (httpx2)"
    assert vocabulary.label(style) == "sync: def + httpx2"
    others = {s: styles.colour(s) for s in styles.PALETTE if s != style}
    assert styles.colour(style) not in others.values()
    # No unknown style can be given a known style's colour.
    for name in ("zeta", "sync (other)", "blocking (httpx2)", "x" * 7):
        assert styles.colour(name) not in styles.PALETTE.values()
    assert vocabulary.ordered(["async (aiohttp)", "sync (httpx2)", "sync", "async"]) == [
        "sync",
        "sync (httpx2)",
        "async",
        "async (aiohttp)",
    ]
    assert set(contract.SYNC_CLIENTS) <= set(contract.CLIENTS)


# --- the transform: classification, labels, numbers ----------------------------------------------


def test_outcomes_are_classified_from_stalled_and_the_longest_gap() -> None:
    table = stall_table(frame(stall_rows()))
    assert cell_of(table, "items_read", "", "sync", 200)["outcome"] == DEADLOCK
    assert cell_of(table, "items_read", "", "sync", 50)["outcome"] == NO
    stall = cell_of(table, "items_read", "db_pool_40", "sync", 400)
    assert (stall["outcome_kind"], stall["outcome"]) == (STALL, "stall 10.3 s")
    assert stall["errors"] == 57
    assert cell_of(table, "chat_stream", "", "sync", 400)["outcome"] == DEADLOCK
    assert cell_of(table, "chat_stream", "", "sync (httpx2)", 400)["outcome"] == NO


@pytest.mark.parametrize(
    ("gap", "stalled", "expected"),
    [
        (contract.GAP_NOTE_S - 0.01, False, NO),
        (contract.GAP_NOTE_S, False, f"{STALL} {contract.GAP_NOTE_S:.1f} s"),
        (4.26, False, "stall 4.3 s"),
        (12.5, True, DEADLOCK),
    ],
)
def test_the_gap_threshold_is_the_contract_s(gap: float, stalled: bool, expected: str) -> None:
    plan = {("items_read", "sync", "-", "db_pool_40"): {200: ("ok", 500.0)}}
    rows = stall_rows(plan)
    rows[0].update(gap_max_s=gap, stalled=stalled)
    table = stall_table(frame(rows))
    assert table.iloc[0]["outcome"] == expected


def test_a_deadlock_in_some_repeats_says_how_many_and_failed_cells_are_named() -> None:
    plan = {
        ("items_read", "sync", "-", "db_pool_40"): {200: ("ok", 500.0)},
        ("items_read", "sync", "-", "db_max_concurrency"): {200: ("ok", 500.0)},
    }
    rows = stall_rows(plan, repeats=(1, 2))
    rows[1].update(stalled=True, gap_max_s=12.4)
    rows[2].update(status="failed", reason="server crashed", rps="")
    rows[3].update(status="failed", reason="server crashed", rps="")
    table = stall_table(frame(rows))
    assert cell_of(table, "items_read", "db_pool_40", "sync", 200)["outcome"] == (
        "deadlock (1 of 2 repeats)"
    )
    assert cell_of(table, "items_read", "db_max_concurrency", "sync", 200)["outcome"] == "failed"


def test_rows_are_labelled_by_what_was_changed() -> None:
    assert row_id("items_read", "sync", "").label == "default (`yield` session dependency)"
    assert row_id("items_write", "sync", "").label == "default (`yield` session dependency)"
    assert row_id("chat_stream", "sync", "").label == "default (httpx)"
    assert (
        row_id("chat_stream", "sync (httpx2)", "").label,
        row_id("chat_stream", "sync (httpx2)", "").kind,
    ) == ("httpx2", FIX)
    assert row_id("items_read", "sync", "db_max_concurrency").label == (
        "`Depends(get_session, max_concurrency=15)`"
    )
    assert row_id("items_read", "async", "") == row_id("items_read", "async", "")
    assert row_id("items_read", "async", "").label == "async def (reference)"
    assert row_id("chat_stream", "async (aiohttp)", "").label == "async def + aiohttp (reference)"
    assert row_id("chat_stream", "async (aiohttp)", "").kind == REFERENCE
    assert row_id("items_read", "sync", "new_idea").label == "arm `new_idea`"
    # Every arm of stalls.toml has a human label.
    toml = Path(__file__).parents[1] / "loadtests" / "matrices" / "stalls.toml"
    if toml.exists():
        import tomllib

        names = {a["name"] for a in tomllib.loads(toml.read_text())["arms"]}
        assert names <= set(FIXES)


def test_table_order_default_then_fixes_then_references() -> None:
    table = stall_table(frame(stall_rows()))
    chat = table[(table["scenario"] == "chat_stream") & (table["users"] == 400)]
    assert list(chat["label"]) == [
        "default (httpx)",
        "httpx2",
        "upstream response closed by the `StreamingResponse`",
        "`Depends(admit, max_concurrency=30)` on the chat route",
        "`httpx.Limits(max_connections=20)`",
        "async def + aiohttp (reference)",
    ]
    assert list(dict.fromkeys(table["scenario"])) == ["items_read", "items_write", "chat_stream"]


def test_rps_is_the_median_with_min_max_over_repeats() -> None:
    plan = {("items_read", "sync", "-", "db_pool_40"): {200: ("ok", 500.0)}}
    rows = stall_rows(plan, repeats=(1, 2, 3))
    for row, rps in zip(rows, (480.0, 500.0, 530.0), strict=True):
        row["rps"] = rps
    cell = stall_table(frame(rows)).iloc[0]
    assert cell["rps"] == 500.0
    assert cell["rps_text"] == "500/s (480/s–530/s)"
    one = stall_table(frame(stall_rows(plan))).iloc[0]
    assert one["rps_text"] == "500/s"


def test_censored_p99_is_a_lower_bound() -> None:
    plan = {("items_read", "sync", "-", "db_pool_40"): {200: ("ok", 500.0)}}
    rows = stall_rows(plan)
    rows[0].update(ok=1500, censored=100, p99_ms=9_000.0, censored_min_ms=8_000.0)
    cell = stall_table(frame(rows)).iloc[0]
    assert cell["p99_bound"]
    assert cell["p99_text"] == "≥ 9,000 ms"
    rows[0].update(censored_min_ms=9_500.0)
    cell = stall_table(frame(rows)).iloc[0]
    assert not cell["p99_bound"]
    assert cell["p99_text"] == "9,000 ms"
    # Too few samples for a p99: the highest percentile n supports, named.
    rows[0].update(ok=150, censored=0, censored_min_ms="", p90_ms=700.0)
    assert stall_table(frame(rows)).iloc[0]["p99_text"] == "p90 (n=150) 700 ms"


def test_the_thread_diagnosis_comes_from_a_stalled_repeat() -> None:
    plan = {("items_read", "sync", "-", ""): {400: ("deadlock", 10.0)}}
    rows = stall_rows(plan, repeats=(1, 2))
    rows[0].update(stalled=False, gap_max_s=0.3, threads="", steady=True)
    # Base cells only: the scenario is named, as no fix arm makes it a stalls scenario.
    cell = stall_table(frame(rows), ["items_read"]).iloc[0]
    assert cell["threads"] == DB_DIAGNOSIS


# --- the advice: from the numbers ---------------------------------------------------------------


def test_advice_ranks_the_fixes_that_never_stalled() -> None:
    table = stall_table(frame(stall_rows()))
    text = advice(table, "items_read")
    assert text.startswith("`items_read`: the default (`yield` session dependency): deadlock at ")
    assert "200 and 400 users" in text
    ranked = text.index("max_concurrency=15")
    assert ranked < text.index("inside the endpoint") < text.index("fastapi-overflow")
    assert "the 3 fixes that never stalled at any load, fastest first at 200 users" in text
    assert "(the default: 30/s)" in text
    still = text[text.index("still stalling or answering errors") :]
    assert 'scope="function"' in still and "pool_size=40" in still
    assert "async def (reference): 1,500/s at 200 users, never stalled" in text


def test_advice_follows_the_numbers() -> None:
    plan = stall_plan()
    # fastapi-overflow now the fastest clean fix at 200 users; pool_size=40 clean too.
    plan[("items_read", "sync", "-", "fastapi_overflow")][200] = ("ok", 5000.0)
    plan[("items_read", "sync", "-", "db_pool_40")][400] = ("ok", 700.0)
    text = advice(stall_table(frame(stall_rows(plan))), "items_read")
    listed = text[text.index("fastest first") : text.index("(the default")]
    assert listed.index("fastapi-overflow 5,000/s") < listed.index("max_concurrency=15")
    assert "the 4 fixes that never stalled" in text
    assert "pool_size=40" in listed


def test_advice_says_when_the_default_did_not_stall() -> None:
    plan = stall_plan()
    plan[("chat_stream", "sync", "httpx", "")][400] = ("ok", 2400.0)
    text = advice(stall_table(frame(stall_rows(plan))), "chat_stream")
    assert "in this run the default (httpx) did not stall at any load (200 and 400 users)" in text
    assert "not reproduced" in text


def test_advice_when_no_fix_avoided_every_stall() -> None:
    plan = {
        ("items_write", "sync", "-", ""): {200: ("deadlock", 10.0)},
        ("items_write", "sync", "-", "db_pool_40"): {200: ("stall", 100.0)},
        ("items_write", "sync", "-", "fastapi_overflow"): {200: ("deadlock", 5.0)},
    }
    text = advice(stall_table(frame(stall_rows(plan))), "items_write")
    assert "none of the 2 fixes avoided every stall" in text
    assert "never stalled" not in text


# --- the report section ---------------------------------------------------------------------------


def test_section_absent_without_fix_arms(tmp_path: Path) -> None:
    # The default fixture run has an observer-effect arm (`noobs`) only.
    run = load_run(write_run(tmp_path, raw=False))
    assert observer_arms(run.summary) == ["noobs"]
    assert fix_arms(run.summary) == []
    assert stall_scenarios(run.summary) == []
    assert blocks_of(SECTION, run) == []
    # A stalls run without its arms: base cells only, no section either.
    base = [r for r in stall_rows() if not r["arm"]]
    assert stall_scenarios(frame(base)) == []


def test_fix_arms_are_not_observer_arms() -> None:
    s = frame(stall_rows())
    assert observer_arms(s) == []
    assert observer_effect(s).empty
    assert "db_max_concurrency" in fix_arms(s)


def test_report_has_one_table_per_scenario_with_advice_and_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section_charts_only(monkeypatch)
    run_dir = write_stalls_run(tmp_path)
    files = write_report(run_dir, reference=None)
    md = files.markdown.read_text()
    section = md[md.index(f"## {HEADING}") :]
    section = section[: section.index("\n## ", 5)]
    for s in ("items_read", "items_write", "chat_stream"):
        assert f"### `{s}`" in section
        assert f"](charts/{s}_stalls.png)" in section
        assert (run_dir / "charts" / f"{s}_stalls.png").exists()
    assert "| fix (arm) | 50 users: stalls? | 50 users: req/s | 50 users: p99 |" in section
    assert "| 200 users: stalls? | 200 users: req/s | 200 users: p99 |" in section
    assert "threads (py-spy, highest load dumped)" in section
    assert "| default (httpx) | no | 2,500/s |" in section
    assert "**deadlock**" in section
    assert "stall 10.3 s; 57 errors (p50 10,004 ms)" in section
    assert DB_DIAGNOSIS in section
    # The settings the arms ran with, from the manifest.
    assert "server setting `db_max_concurrency = 15`" in section
    assert 'server setting `stream_close = "response"`' in section
    # Fix arms are not an observer effect.
    assert "this run has no observer-effect arm" in md
    assert "sync: def + httpx2" in md  # the style table names the new style


def test_threads_at_a_lower_load_say_where() -> None:
    plan = {
        ("items_read", "sync", "-", ""): {200: ("deadlock", 10.0), 400: ("ok", 100.0)},
    }
    table = stall_table(frame(stall_rows(plan)), ["items_read"])
    md = scenario_table(table, "items_read")
    assert md.rows[0][-1] == f"at 200 users: {DB_DIAGNOSIS}"


def test_fix_settings_read_the_manifest() -> None:
    manifest = {"matrix": {"arms": [{"name": "a", "env": {"x": 1, "y": True, "z": "r"}}]}}
    assert fix_settings(manifest) == {"a": '`x = 1`, `y = true`, `z = "r"`'}
    assert fix_settings({}) == {}
    assert fix_settings({"matrix": {"arms": "nonsense"}}) == {}


def test_stall_chart_is_titled_labelled_and_marks_stalls() -> None:
    table = stall_table(frame(stall_rows()))
    fig, ax = plt.subplots()
    plot_stall_rps(ax, table, "items_read", 400)
    assert ax.get_title() == "items_read at 400 users"
    assert "requests/s" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "default (yield session dependency)"  # no Markdown in a chart
    notes = {t.get_text() for t in ax.texts}
    assert {"deadlock", "stall 10.3 s"} <= notes
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 3  # the default, scope="function" (deadlocks), pool_size=40 (stall)
    colours = {p.get_edgecolor()[:3] for p in ax.patches}
    assert len(colours) == 2  # sync and async
    plt.close(fig)


# --- the threadpool sweep over several scenarios --------------------------------------------------


def test_sweep_over_several_scenarios(tmp_path: Path) -> None:
    run = load_run(write_multi_sweep_run(tmp_path))
    names = [s for s, _ in MULTI_SWEEP_SCENARIOS]
    assert sweep_scenarios(run.summary) == sorted(names)
    sweep = aggregate_sweep(run.summary)
    for s in names:
        table = table_of(run.summary, s)
        assert table.header[0] == "users"
        assert "40 tokens (default)" in table.header
        assert table.header[-2:] == ("fastest `async def`", "gap closed by more tokens")
        assert [r[0] for r in table.rows] == ["50", "200"]
        assert all(r[-2].startswith("`async`:") for r in table.rows)
        assert len(gaps(sweep, s)) == 2
    # items are twice as fast as chat in the fixture: each table carries its own numbers.
    chat = table_of(run.summary, "chat").rows[0]
    items = table_of(run.summary, "items_read").rows[0]
    assert chat[2] != items[2]


def test_sweep_table_names_stalled_token_counts(tmp_path: Path) -> None:
    run = load_run(write_multi_sweep_run(tmp_path))
    ran = sweep_outcomes(run.summary)
    stalled = ran[ran["stalled"] > 0]
    where = zip(stalled["scenario"], stalled["users"], stalled["threadpool_tokens"], strict=True)
    assert list(where) == [("items_read", 200, 10)]
    row = table_of(run.summary, "items_read").rows[1]
    assert row[1] == "**stalled** (2 of 2 repeats)"
    # The best count is in bold.
    assert row[4].startswith("**1,267/s")


def test_sweep_gap_skipped_when_the_default_count_stalled(tmp_path: Path) -> None:
    run_dir = write_multi_sweep_run(tmp_path)
    summary = load_run(run_dir).summary
    at_default = (
        (summary["scenario"] == "items_write")
        & (summary["users"] == 200)
        & (summary["style"] == "sync")
        & (summary["threadpool_tokens"] == 40)
    )
    summary.loc[at_default, "stalled"] = True
    sweep = aggregate_sweep(summary)
    # Without what ran, another count would stand in for the default; with it, no gap.
    assert [g.users for g in gaps(sweep, "items_write", sweep_outcomes(summary))] == [50]
    row = table_of(summary, "items_write").rows[1]
    assert row[-1] == "n/a"
    assert row[2] == "**stalled** (2 of 2 repeats)"


def test_sweep_report_has_a_table_and_chart_per_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section_charts_only(monkeypatch)
    run_dir = write_multi_sweep_run(tmp_path)
    md = write_report(run_dir, reference=None).markdown.read_text()
    section = md[md.index("## Threadpool sweep") :]
    section = section[: section.index("\n## ", 5)]
    for s, _ in MULTI_SWEEP_SCENARIOS:
        assert f"### `{s}`" in section
        assert f"](charts/{s}_threadpool_sweep.png)" in section
    assert section.count("| users | 10 tokens | 40 tokens (default) |") == 3
    assert HEADING not in md  # no fix arms in a sweep


def test_gap_text_when_the_default_completed_nothing() -> None:
    # items_read `def` at 200 users, 40 tokens: the window ended with no request completed.
    from analysis.judge.sweep import Gap, gap_text

    gap = Gap("items_read", 200, 40, 0.0, math.nan, 10, 1400.0, 250.0, 1300.0, 400.0)
    text = gap_text(gap)
    assert "where the default completed nothing" in text
    assert "More tokens close the whole gap" in text


def test_advice_does_not_call_a_fix_clean_when_it_errs_or_skipped_a_load() -> None:
    plan = stall_plan()
    # fastapi-overflow ran only at 50 users; max_concurrency answered errors at 400 users.
    plan[("items_read", "sync", "-", "fastapi_overflow")] = {50: ("ok", 1500.0)}
    rows = stall_rows(plan)
    for row in rows:
        if row["arm"] == "db_max_concurrency" and row["users"] == 400:
            row["errors"] = 12
    text = advice(stall_table(frame(rows)), "items_read")
    listed = text[text.index("never stalled") : text.index("(the default")]
    assert "fastapi-overflow" not in listed and "max_concurrency=15" not in listed
    still = text[text.index("still stalling or answering errors") :]
    assert "fastapi-overflow (not run at 200 and 400 users)" in still
    assert "12 errors at 400 users" in still
