"""The section "Requests whose client left" (analysis.sections.abandon, issue 21): what a request
whose client gave up costs per style, by default and in the `cancel` arm.

On the committed `make bench-abandon` run it must give the figures README.md's table (Failure
behaviour, "cell (50 users, all clients gone at 0.5 s)") was read off the files by hand: the
ranges there are the two passes' min–max, so each figure's min and max over the repeats must be
exactly the README's, and a figure README.md writes `-` for must be unknown. On a run without
such scenarios (or whose users never gave up) it is absent.
"""

import csv
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from analysis.document import to_markdown  # noqa: E402
from analysis.judge.repeats import Repeats  # noqa: E402
from analysis.judge.verdict import decide_verdicts  # noqa: E402
from analysis.load import Run, load_run  # noqa: E402
from analysis.sections import abandon, registry  # noqa: E402
from analysis.sections.abandon import (  # noqa: E402
    CONN_WAITING,
    IN_USE,
    OK,
    QUERIES,
    REQUESTS,
    SECTION,
    THREAD_WAITING,
    UPSTREAM_CALLS,
    AbandonTable,
    figure,
)
from analysis.vocabulary import ASYNC, BLOCKING, DEFAULT_ARM, SYNC  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
ABANDON = REFERENCE / "abandon"
CANCEL = "cancel"
CHAT, ITEMS = "chat_abandon", "items_wait"
# README.md's table, (lo, hi) over the two passes; None where it writes `-` (no scrape got
# through the blocked loop). Per scenario x style x arm, 50 users.
README: dict[tuple[str, str, str], dict[str, tuple[float, float] | None]] = {
    # upstream calls started; requests still queued (waiting for a thread / a connection).
    (CHAT, SYNC, DEFAULT_ARM): {UPSTREAM_CALLS: (440, 440), THREAD_WAITING: (360, 360)},
    (CHAT, SYNC, CANCEL): {UPSTREAM_CALLS: (540, 544), THREAD_WAITING: (10, 10)},
    (CHAT, ASYNC, DEFAULT_ARM): {
        UPSTREAM_CALLS: (640, 640),
        IN_USE: (100, 100),
        CONN_WAITING: (19, 22),
    },
    (CHAT, ASYNC, CANCEL): {UPSTREAM_CALLS: (601, 610), IN_USE: (50, 50), CONN_WAITING: (0, 0)},
    (CHAT, BLOCKING, DEFAULT_ARM): {UPSTREAM_CALLS: (11, 11), THREAD_WAITING: None, IN_USE: None},
    (CHAT, BLOCKING, CANCEL): {UPSTREAM_CALLS: (60, 61), THREAD_WAITING: None, IN_USE: None},
    # queries run, and requests waiting for a thread.
    (ITEMS, SYNC, DEFAULT_ARM): {QUERIES: (27, 29), THREAD_WAITING: (532, 533)},
    (ITEMS, SYNC, CANCEL): {QUERIES: (90, 90), THREAD_WAITING: (50, 50)},
    (ITEMS, ASYNC, DEFAULT_ARM): {QUERIES: (90, 90)},
    (ITEMS, ASYNC, CANCEL): {QUERIES: (181, 230)},
    (ITEMS, BLOCKING, DEFAULT_ARM): {QUERIES: None},
}


def table_of(run: Run) -> AbandonTable:
    names = SECTION.scenarios(run)
    return SECTION.table(run, names, decide_verdicts(run.summary))


def row(table: AbandonTable, scenario: str, style: str, arm: str) -> pd.Series:
    frame = table.frame
    part = frame[
        (frame["scenario"] == scenario) & (frame["style"] == style) & (frame["arm"] == arm)
    ]
    assert len(part) == 1, (scenario, style, arm)
    return part.iloc[0]


@pytest.fixture(scope="module")
def reference() -> AbandonTable:
    return table_of(load_run(ABANDON))


def test_the_section_covers_both_scenarios_of_the_abandon_run(reference: AbandonTable) -> None:
    assert reference.scenarios == (CHAT, ITEMS)
    # 2 scenarios x 3 styles x 2 arms, 50 users, each over its 2 repeats.
    assert len(reference.frame) == 12
    assert set(reference.frame["repeats"]) == {2} and set(reference.frame["failed"]) == {0}
    for (scenario, style, arm), _ in README.items():
        r = row(reference, scenario, style, arm)
        # Every user gave up: 500 requests sent in each window, none answered ok.
        assert figure(r, REQUESTS) == Repeats(500, 500, 500, 2)
        assert figure(r, OK) == Repeats(0, 0, 0, 2)


@pytest.mark.parametrize("key", list(README), ids=lambda k: "-".join(x or "default" for x in k))
def test_the_figures_are_the_ones_readme_read_off_the_files(
    key: tuple[str, str, str], reference: AbandonTable
) -> None:
    r = row(reference, *key)
    for metric, expected in README[key].items():
        got = figure(r, metric)
        if expected is None:
            assert not got.known, metric
            continue
        assert (got.lo, got.hi, got.n) == (*expected, 2), metric
        assert got.lo <= got.median <= got.hi


def test_a_repeat_without_a_scrape_is_left_out_and_said(reference: AbandonTable) -> None:
    # `async def` + sync lib blocks the loop: no scrape of `/metrics` got through once the load
    # began, in either arm. The cancel arm's one repeat with a scrape had it 1 s before its
    # window opened (0 statements then): that counts nothing of the load, so it is not a figure.
    for arm in (DEFAULT_ARM, CANCEL):
        r = row(reference, ITEMS, BLOCKING, arm)
        assert not figure(r, QUERIES).known
        assert abandon.figure_text(r, QUERIES) == "-"
    # One repeat with a scrape in its window, one without: said so.
    r = row(reference, ITEMS, SYNC, DEFAULT_ARM)
    assert figure(r, QUERIES) == Repeats(28, 27, 29, 2)


def test_the_report_shows_the_section_with_its_tables(reference: AbandonTable) -> None:
    run = load_run(ABANDON)
    shown = registry.show(run, decide_verdicts(run.summary))
    assert "abandon" in [s.key for s in shown]
    md = to_markdown(SECTION.blocks(reference, ()), ABANDON)
    assert md.startswith(f"## {abandon.HEADING}")
    assert "| `def` | default | 500 | 0 | 440 | 40 | 0 | 360 | 2 |" in md
    assert "| `async def` | `cancel` | 500 | 0 | 605.5 (601–610) | 50 | 0 | 0 | 2 |" in md
    assert "| `async def` + sync lib | default | 500 | 0 | - | - | - | 2 |" in md
    assert "- `def`, default → `cancel`: upstream calls started 440 → 542" in md
    assert "`cancel_on_disconnect = true` (`LAB_CANCEL_ON_DISCONNECT`)" in md


def test_the_chart_is_drawn_from_the_table(reference: AbandonTable, tmp_path: Path) -> None:
    charts = SECTION.charts(reference, tmp_path)
    assert [c.path.name for c in charts] == [abandon.CHART]
    assert charts[0].path.stat().st_size > 10_000


@pytest.mark.parametrize("name", ["", "postgres"], ids=["main", "postgres"])
def test_the_section_is_absent_where_no_client_gave_up(name: str) -> None:
    # The main run has neither scenario; postgres/ has `items_wait` whose users all waited.
    run = load_run(REFERENCE / name)
    assert SECTION.scenarios(run) == []
    assert "abandon" not in [s.key for s in registry.show(run, decide_verdicts(run.summary))]


# --- what each figure is read from, on a copy of the run changed where it matters ---------------


def _set_status(summary: Path, cell_id: str, status: str) -> None:
    with summary.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    for r in rows:
        if r["cell_id"] == cell_id:
            r["status"], r["reason"], r["valid"] = status, "server exited", "False"
    with summary.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_each_figure_comes_from_its_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "abandon"
    shutil.copytree(ABANDON, run_dir, ignore=shutil.ignore_patterns("charts", "report.*"))
    # Queries: the last scrape in time, not the file's last line nor the largest value.
    metrics = run_dir / "items_wait__sync-none__u050__r1" / "metrics.csv"
    with metrics.open("a") as f:
        f.write("1796408100.0,lab_db_statements_total,,999.0\n")
    # Upstream calls: cell.json `upstream_stats.requests`; a cell without them is not counted.
    cell = run_dir / "chat_abandon__async-httpx__u050__r2" / "cell.json"
    data = json.loads(cell.read_text())
    data["upstream_stats"] = None
    cell.write_text(json.dumps(data))
    # A failed repeat describes nothing: counted as failed, its figures left out.
    _set_status(run_dir / "summary.csv", "chat_abandon__sync-httpx__u050__r2", "failed")

    table = table_of(load_run(run_dir))
    assert figure(row(table, ITEMS, SYNC, DEFAULT_ARM), QUERIES) == Repeats(28, 27, 29, 2)
    r = row(table, CHAT, ASYNC, DEFAULT_ARM)
    assert figure(r, UPSTREAM_CALLS) == Repeats(640, 640, 640, 1)
    assert abandon.figure_text(r, UPSTREAM_CALLS) == "640 (1 of 2 repeats)"
    r = row(table, CHAT, SYNC, DEFAULT_ARM)
    assert (int(r["repeats"]), int(r["failed"])) == (2, 1)
    assert figure(r, UPSTREAM_CALLS) == Repeats(440, 440, 440, 1)
    assert figure(r, THREAD_WAITING).n == 1
    assert abandon.repeats_text(r) == "2 (1 failed)"
    assert abandon.figure_text(r, UPSTREAM_CALLS) == "440"
