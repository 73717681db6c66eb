"""Rate (open-loop) cells and SLO capacity: loading, the pure transform, the hockey chart and the
report section that leads a run with rate cells."""

import csv
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import contract  # noqa: E402
from analysis.judge.capacity import (  # noqa: E402
    StyleCapacity,
    capacities,
    capacity_text,
    headline,
    rate_cells,
    rate_points,
    ratio_text,
    run_slo,
    style_words,
)
from analysis.judge.verdict import decide_verdicts  # noqa: E402
from analysis.load import RunFormatError, load_capacity, load_run  # noqa: E402
from analysis.plot.capacity import hockey  # noqa: E402
from analysis.report import write_report  # noqa: E402
from analysis.sections.capacity import HEADING  # noqa: E402
from contract.slo import Slo, parse_slo  # noqa: E402
from tests.analysis_fixtures import (  # noqa: E402
    RATES,
    SLO_TEXT,
    capacity_rows,
    write_rate_run,
)

SLO = parse_slo(SLO_TEXT)
HEADLINE = (
    "At p99 ≤ 500 ms and ≤ 1 % errors, `def` carries 200 req/s, `async def` + httpx 400 req/s "
    "(x2.00 of `def`), `async def` + aiohttp ≥ 800 req/s (every rate tried met the SLO; ≥ x4.00 "
    "of `def`), `async def` + sync lib < 100 req/s (stalls at 100 req/s)."
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same-named run with both kinds of cells, closed-loop only, rate only, no SLO."""
    root = tmp_path_factory.mktemp("rates")
    return {
        "both": write_rate_run(root / "both", name="run"),
        "closed": write_rate_run(
            root / "closed", rates=False, capacity=False, name="run", spec=True
        ),
        "rates": write_rate_run(root / "rates", closed=False, name="run"),
        "noslo": write_rate_run(root / "noslo", capacity=False, slo="", name="run"),
    }


@pytest.fixture(scope="module")
def reports(runs: dict[str, Path]) -> dict[str, str]:
    """report.md of each run (rendering is slow: once for the module)."""
    return {k: write_report(p, reference=None).markdown.read_text() for k, p in runs.items()}


@pytest.fixture(scope="module")
def cells(runs: dict[str, Path]) -> pd.DataFrame:
    run = load_run(runs["both"])
    return rate_cells(run.rates, run_slo(run.manifest, run.capacity))


def _cap(**kw: object) -> StyleCapacity:
    base: dict[str, object] = {
        "scenario": "chat",
        "style": "async (aiohttp)",
        "arm": "",
        "variant": "async",
        "client": "aiohttp",
        "slo": SLO_TEXT,
        "capacity": 900.0,
        "lo": 900.0,
        "hi": 900.0,
        "repeats": 1,
        "below": 0,
        "bound": "bracketed",
        "limit": 1000.0,
        "limit_reason": "p99 700 ms > 500 ms",
        "p99_ms": 400.0,
    }
    return StyleCapacity(**{**base, **kw})  # type: ignore[arg-type]


def _capacity_frame(rows: list[dict[str, object]], tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "capacity.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(contract.CAPACITY_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return load_capacity(path)


# --- load ------------------------------------------------------------------------------------


def test_rate_rows_are_kept_out_of_the_closed_loop_summary(runs: dict[str, Path]) -> None:
    both, closed = load_run(runs["both"]), load_run(runs["closed"])
    # Rate cells share scenario, variant, client and users with closed-loop cells: no collision.
    assert len(both.rates) == 4 * len(RATES) * 2
    assert both.rates["offered_rps"].notna().all()
    assert both.summary["offered_rps"].isna().all()
    pd.testing.assert_frame_equal(both.summary, closed.summary)
    assert decide_verdicts(both.summary).verdicts == decide_verdicts(closed.summary).verdicts
    assert closed.rates.empty and closed.capacity.empty
    assert list(closed.capacity.columns[: len(contract.CAPACITY_COLUMNS)]) == list(
        contract.CAPACITY_COLUMNS
    )


def test_a_summary_without_rate_columns_does_not_list_them_missing(tmp_path: Path) -> None:
    run = write_rate_run(tmp_path, rates=False, capacity=False)
    text = (run / "summary.csv").read_text().splitlines()
    rows = list(csv.DictReader(text))
    dropped = ("offered_rps", "achieved_rps", "send_lag_p99_ms", "slots_full", "threads")
    names = [c for c in rows[0] if c not in dropped]
    with (run / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    loaded = load_run(run)
    assert loaded.missing_columns == ("threads",)
    assert loaded.rates.empty and len(loaded.summary) == len(rows)


def test_an_offered_rate_must_be_positive(tmp_path: Path) -> None:
    run = write_rate_run(tmp_path, closed=False, capacity=False)
    rows = list(csv.DictReader((run / "summary.csv").read_text().splitlines()))
    rows[0]["offered_rps"] = "0"
    with (run / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(RunFormatError, match="offered_rps"):
        load_run(run)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bound": "somewhere"}, r"column `bound` \(str\) is not one of .* line 2: 'somewhere'"),
        ({"capacity_rps": "lots"}, r"column `capacity_rps` \(float\) is not a number"),
        ({"capacity_rps": ""}, r"column `capacity_rps` .* does not match `bound`"),
        ({"limit_rps": ""}, r"column `limit_rps` .* `bound` is not above_highest"),
        ({"repeat": "0"}, r"column `repeat` .* below 1"),
        ({"slo": "p99=fast"}, r"column `slo` at line 2: SLO part"),
        ({"scenario": ""}, r"column `scenario` \(str\) is empty"),
    ],
)
def test_capacity_csv_errors_name_file_and_column(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    rows = capacity_rows()
    rows[0].update(change)  # the first row is `def`'s, bracketed
    with pytest.raises(RunFormatError, match=message) as err:
        _capacity_frame(rows, tmp_path)
    assert "capacity.csv" in str(err.value)


def test_capacity_csv_must_have_every_column(tmp_path: Path) -> None:
    path = tmp_path / "capacity.csv"
    path.write_text("scenario,variant\nchat,sync\n")
    with pytest.raises(RunFormatError, match=r"capacity.csv: missing required column\(s\)"):
        load_capacity(path)


def test_an_absent_capacity_csv_is_no_search(tmp_path: Path) -> None:
    frame = load_capacity(tmp_path / "capacity.csv")
    assert frame.empty and "bound" in frame.columns


# --- transform -------------------------------------------------------------------------------


def test_cells_are_judged_by_the_contract(cells: pd.DataFrame) -> None:
    sync = cells[cells["style"] == "sync"].set_index(["offered_rps", "repeat"])
    assert sync.loc[(200.0, 1), "slo_status"] == "pass"
    assert sync.loc[(400.0, 1), "slo_status"] == "fail"
    assert sync.loc[(400.0, 1), "slo_why"] == "p99 1000 ms > 500 ms"
    blocking = cells[cells["style"] == "blocking"]
    assert set(blocking["slo_why"]) == {"stalled"}
    assert sync["achieved_ratio"].loc[(100.0, 1)] == pytest.approx(0.99)
    # Reading order: styles in the canonical order, rates rising.
    assert list(dict.fromkeys(cells["style"])) == ["sync", "async", "async (aiohttp)", "blocking"]
    assert list(sync.index.get_level_values(0)) == sorted(sync.index.get_level_values(0))


def test_no_slo_no_judgement(runs: dict[str, Path]) -> None:
    run = load_run(runs["noslo"])
    assert run_slo(run.manifest, run.capacity) is None
    assert set(rate_cells(run.rates, None)["slo_status"]) == {""}


def test_points_are_medians_over_repeats(cells: pd.DataFrame) -> None:
    points = rate_points(cells)
    assert len(points) == 4 * len(RATES)
    p = points.set_index(["style", "offered_rps"])
    assert p.loc[("sync", 100.0), "repeats"] == 2
    assert p.loc[("sync", 100.0), "p99_ms"] == pytest.approx(225.0 * 1.0, rel=1e-3)
    assert p.loc[("sync", 400.0), "slo_status"] == "fail"
    assert p.loc[("blocking", 100.0), "stalled"]
    assert not p.loc[("sync", 100.0), "stalled"] and not p.loc[("sync", 100.0), "invalid"]


def test_points_use_valid_repeats_and_mark_all_invalid(cells: pd.DataFrame) -> None:
    changed = cells.copy()
    at = (changed["style"] == "sync") & (changed["offered_rps"] == 100.0)
    changed.loc[at & (changed["repeat"] == 1), ["valid", "p99_ms"]] = [False, 9999.0]
    p = rate_points(changed).set_index(["style", "offered_rps"])
    assert p.loc[("sync", 100.0), "p99_ms"] == pytest.approx(229.5)  # repeat 2 only
    assert not p.loc[("sync", 100.0), "invalid"]
    changed.loc[at, "valid"] = False
    p = rate_points(changed).set_index(["style", "offered_rps"])
    assert p.loc[("sync", 100.0), "invalid"]
    changed.loc[at & (changed["repeat"] == 2), "slo_status"] = "pass"
    changed.loc[at & (changed["repeat"] == 1), "slo_status"] = "unjudged"
    assert rate_points(changed).set_index(["style", "offered_rps"]).loc[
        ("sync", 100.0), "slo_status"
    ] == ("1 of 2 pass")


def test_capacities_and_ratios_to_def(runs: dict[str, Path], cells: pd.DataFrame) -> None:
    caps = {c.style: c for c in capacities(load_run(runs["both"]).capacity, cells)}
    assert list(caps) == ["sync", "async", "async (aiohttp)", "blocking"]
    assert (caps["sync"].capacity, caps["sync"].bound, caps["sync"].limit) == (
        200,
        "bracketed",
        400,
    )
    assert ratio_text(caps["sync"]) == "baseline"
    assert caps["async"].ratio == pytest.approx(2.0) and caps["async"].ratio_sign == ""
    assert caps["async (aiohttp)"].ratio == pytest.approx(4.0)
    assert caps["async (aiohttp)"].ratio_sign == "≥"
    assert caps["blocking"].ratio is None and caps["blocking"].stalled_at == 100.0
    assert math.isnan(caps["blocking"].capacity) and caps["blocking"].below == 2


@pytest.mark.parametrize(
    ("values", "expected", "lo", "hi", "below"),
    [
        ((360.0, 380.0, 420.0), 380.0, 360.0, 420.0, 0),
        ((360.0, 400.0), 380.0, 360.0, 400.0, 0),
        # A repeat without a capacity: the lower middle repeat stands for the style.
        ((None, 300.0, 400.0), 300.0, 300.0, 400.0, 1),
        ((None, None, 400.0), math.nan, 400.0, 400.0, 2),
    ],
)
def test_capacity_is_the_median_over_repeats(
    tmp_path: Path,
    values: tuple[float | None, ...],
    expected: float,
    lo: float,
    hi: float,
    below: int,
) -> None:
    rows = []
    for repeat, value in enumerate(values, start=1):
        row = capacity_rows()[0]
        row.update(repeat=repeat, capacity_rps=value if value else "")
        if value is None:
            row.update(bound="below_lowest", limit_rps=100.0)
        rows.append(row)
    (cap,) = capacities(_capacity_frame(rows, tmp_path))
    assert (cap.lo, cap.hi, cap.below, cap.repeats) == (lo, hi, below, len(values))
    if math.isnan(expected):
        assert math.isnan(cap.capacity) and cap.bound == "below_lowest"
    else:
        assert cap.capacity == expected


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"bound": "bracketed"}, "900 req/s"),
        ({"bound": "above_highest"}, "≥ 900 req/s (every rate tried met the SLO)"),
        ({"bound": "load_side"}, "≥ 900 req/s (the load generator could not offer more)"),
        ({"bound": "below_lowest", "capacity": math.nan, "limit": 20.0}, "< 20 req/s"),
        ({"stalled_at": 1000.0}, "900 req/s (stalls at 1,000 req/s)"),
        ({"capacity": 4.5, "bound": "bracketed"}, "4.5 req/s"),
    ],
)
def test_capacity_wording_per_bound(kw: dict[str, object], text: str) -> None:
    assert capacity_text(_cap(**kw)) == text


def test_ratio_to_a_lower_bound_is_a_bound() -> None:
    base = _cap(style="sync", variant="sync", client="httpx", capacity=300.0)
    frame = pd.DataFrame(
        [
            {
                "scenario": "chat",
                "variant": c.variant,
                "client": c.client,
                "arm": "",
                "style": c.style,
                "repeat": 1,
                "slo": SLO_TEXT,
                "capacity_rps": c.capacity,
                "limit_rps": c.limit if c.bound != "above_highest" else math.nan,
                "bound": c.bound,
                "limit_reason": "",
                "p99_at_capacity_ms": 300.0,
                "cells": 3,
                "cell_ids": "",
            }
            for c in (base, _cap())
        ]
    )
    caps = capacities(frame)
    assert ratio_text(caps[1]) == "x3.00"
    frame.loc[0, ["capacity_rps", "bound", "limit_rps"]] = [900.0, "above_highest", math.nan]
    frame.loc[1, "capacity_rps"] = 450.0
    assert ratio_text(capacities(frame)[1]) == "≤ x0.50"
    frame.loc[1, "bound"] = "load_side"
    assert capacities(frame)[1].ratio is None  # two lower bounds bound nothing


def test_headline_is_computed_from_the_numbers(runs: dict[str, Path], cells: pd.DataFrame) -> None:
    assert headline(capacities(load_run(runs["both"]).capacity, cells)) == [HEADLINE]


def test_style_words() -> None:
    assert style_words("sync", "httpx") == "`def`"
    assert style_words("sync", "httpx2") == "`def` + httpx2"
    assert style_words("async", "httpx") == "`async def` + httpx"
    assert style_words("async", "-") == "`async def`"
    assert style_words("blocking", "httpx", "fix") == "`async def` + sync lib (arm `fix`)"


# --- plot ------------------------------------------------------------------------------------


def _lines_at(ax: plt.Axes, y: float) -> list:
    return [line for line in ax.get_lines() if list(line.get_ydata()) == [y, y]]


def test_hockey_draws_styles_slo_and_capacities(runs: dict[str, Path], cells: pd.DataFrame) -> None:
    points = rate_points(cells)
    caps = capacities(load_run(runs["both"]).capacity, cells)
    fig, (ax, bare) = plt.subplots(1, 2)
    try:
        assert hockey(ax, points, SLO, caps, "chat") is ax
        assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
        assert "req" in ax.get_xlabel() and "ms" in ax.get_ylabel() and "chat" in ax.get_title()
        assert len(_lines_at(ax, 500.0)) == 1  # the SLO
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert {"p99", "p50", "stalled", "capacity at the SLO"} <= set(legend)
        assert "SLO" in " ".join(t.get_text() for t in ax.texts)
        solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata())]
        assert len(solid) == 4  # one p99 line per style
        stalled = [ln for ln in ax.get_lines() if ln.get_marker() == "X" and len(ln.get_xdata())]
        assert stalled and all(ln.get_color() == "#D55E00" for ln in stalled)
        # Capacities: a diamond for a bracketed one, a triangle for a lower bound; none for < X.
        marks = [ln for ln in ax.get_lines() if ln.get_marker() in ("D", ">")]
        assert sorted(float(ln.get_xdata()[0]) for ln in marks) == [200.0, 400.0, 800.0]
        hockey(bare, points, None)
        assert not _lines_at(bare, 500.0) and not bare.texts
    finally:
        plt.close(fig)


def test_a_p99_from_too_few_samples_is_drawn_apart_and_labelled(cells: pd.DataFrame) -> None:
    # The sample rule left the p99 of the lowest rate empty in every repeat: its raw value is a
    # thin dotted line with hollow squares, in the legend as such; the solid p99 skips it.
    few = cells.copy()
    low = few["offered_rps"] == RATES[0]
    few.loc[low, "p99_ms_raw"] = few.loc[low, "p99_ms"]
    few.loc[low, "p99_ms"] = math.nan
    points = rate_points(few)
    at_low = points[points["offered_rps"] == RATES[0]]
    assert at_low["p99_ms"].isna().all() and at_low["p99_ms_raw"].notna().all()
    fig, ax = plt.subplots()
    try:
        hockey(ax, points, SLO)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "p99 of too few samples (raw)" in legend
        hollow = [ln for ln in ax.get_lines() if ln.get_marker() == "s" and len(ln.get_xdata())]
        assert hollow and all(list(ln.get_xdata()) == [RATES[0]] for ln in hollow)
        solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata())]
        assert all(RATES[0] not in list(ln.get_xdata()) for ln in solid)
    finally:
        plt.close(fig)
    # Without such a point there is no such line, nor its legend entry.
    fig, ax = plt.subplots()
    try:
        hockey(ax, rate_points(cells), SLO)
        assert "p99 of too few samples (raw)" not in [t.get_text() for t in ax.get_legend().texts]
    finally:
        plt.close(fig)


# --- report ----------------------------------------------------------------------------------


def _section(md: str) -> str:
    start = md.index(f"## {HEADING}")
    end = md.find("\n## ", start + 1)
    return md[start : end if end >= 0 else len(md)]


def test_the_section_leads_a_run_with_rate_cells(
    reports: dict[str, str], runs: dict[str, Path]
) -> None:
    md = reports["both"]
    assert md.index(f"## {HEADING}") < md.index("## At a glance") < md.index("## Verdicts")
    section = _section(md)
    assert HEADLINE in section
    # Beside the offered rates: what was sent and what was served, each named.
    assert (
        "| `def` | 200 req/s | sent 198/s, served 196/s | 400 req/s: p99 1000 ms > 500 ms | "
        "sent 360/s, served 220/s | `bracketed` | baseline |"
    ) in section
    assert "| style | offered | repeat | sent | sent / offered | served |" in section
    assert "**sent** (`achieved_rps`)" in section and "**served** (`served_rps`)" in section
    assert "![chat: latency vs offered rate](charts/chat_capacity.png)" in section
    assert (runs["both"] / "charts" / "chat_capacity.png").stat().st_size > 1000
    # Every rate cell is a row of the cell table, with its judgement.
    assert len(re.findall(r"^\| `def` \| \d+/s \| [12] \|", section, re.M)) == len(RATES) * 2
    assert "| 400/s | 1 | 360/s | 90% | 220/s | 300 ms | yes | 600 ms | 1,000 ms |" in section
    assert "**fail**: p99 1000 ms > 500 ms" in section and "pass: p99 220 ms" in section
    html = (runs["both"] / "report.html").read_text()
    assert (
        f"<h2>{HEADING}</h2>" in html and "<code>async def</code> + sync lib &lt; 100 req/s" in html
    )


def test_a_run_without_rate_cells_is_unchanged(reports: dict[str, str]) -> None:
    assert HEADING not in reports["closed"]
    assert "capacity" not in reports["closed"].lower().replace("upstream capacity", "")
    # The same closed-loop cells with rate cells beside them: everything but the section agrees.
    without = reports["both"].replace(_section(reports["both"]), "")

    def same(text: str) -> str:
        # The settings table counts the planned cells, which the rate cells add to.
        text = re.sub(r"^\| `cells` \| \d+ entries \|$", "| `cells` |", text, flags=re.M)
        return text.replace("\n\n\n", "\n\n")

    assert same(without) == same(reports["closed"])


def test_a_rate_only_run_reports_capacity_only(reports: dict[str, str]) -> None:
    md = reports["rates"]
    assert md.index(f"## {HEADING}") < md.index("## Machine and versions")
    assert "## Verdicts" not in md and "## At a glance" not in md
    assert HEADLINE in md


def test_without_a_search_the_chart_and_cells_still_show(reports: dict[str, str]) -> None:
    section = _section(reports["noslo"])
    assert "No capacity search on `chat`" in section and "carries" not in section
    assert "charts/chat_capacity.png" in section
    assert "The run set no SLO" in section


def test_slo_comes_from_capacity_then_spec() -> None:
    empty = pd.DataFrame(columns=list(contract.CAPACITY_COLUMNS))
    assert run_slo({"matrix": {"slo": "p95=2s"}}, empty) == Slo(2000.0, 1.0, 95.0)
    assert run_slo({"matrix": {"slo": ""}}, empty) is None
    assert run_slo({}, empty) is None
