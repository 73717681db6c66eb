"""Charts, the report and the CLI, rendered from the fixture run (Agg backend, files only)."""

import json
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from analysis.__main__ import main  # noqa: E402
from analysis.judge.transform import MissingColumnError, aggregate, excluded  # noqa: E402
from analysis.judge.verdict import decide_verdicts  # noqa: E402
from analysis.load import load_run  # noqa: E402
from analysis.plot import charts, plots  # noqa: E402
from analysis.report import write_report  # noqa: E402
from analysis.report.compare import compare_frames, direction, plot_change  # noqa: E402
from tests.analysis_fixtures import MECHANISM_COLUMNS, SECRET, write_run  # noqa: E402

EXPECTED_CHARTS = {
    "overview.png",
    "cpu_per_request.png",
    *(
        f"{s}_{c}.png"
        for s in ("hello", "chat", "chat_stream", "cpu", "mixed")
        for c in ("throughput", "latency", "cdf")
    ),
    "chat_stream_tokens.png",
    "mixed_probe.png",
    *(f"{s}_loop_lag.png" for s in ("hello", "chat", "chat_stream", "cpu", "mixed")),
    *(f"{s}_cpu.png" for s in ("hello", "chat", "chat_stream", "cpu", "mixed")),
    *(f"{s}_overhead.png" for s in ("chat", "chat_stream", "mixed")),
    "chat_threadpool.png",
}


# Every chart's axes as saved: (file name, title, x label, y label) per axes with data.
SAVED_AXES: list[tuple[str, str, str, str]] = []


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture run with its report written once for every test here (rendering is slow)."""
    run = write_run(tmp_path_factory.mktemp("report"))
    save = charts._save

    def recording_save(fig, path: Path) -> None:
        for ax in fig.axes:
            if ax.has_data():
                SAVED_AXES.append((path.name, ax.get_title(), ax.get_xlabel(), ax.get_ylabel()))
        save(fig, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(charts, "_save", recording_save)
        assert main(["report", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def agg(reported: Path) -> pd.DataFrame:
    return aggregate(load_run(reported).summary)


def test_plot_functions_draw_on_the_given_ax(agg: pd.DataFrame, reported: Path) -> None:
    run = load_run(reported)
    decided = decide_verdicts(run.summary)
    table = compare_frames(agg, agg)
    fig, axes = plt.subplots(2, 4)
    try:
        calls = [
            lambda ax: plots.plot_throughput(ax, agg, "chat", excluded(run.summary)),
            lambda ax: plots.plot_percentiles(ax, agg, "chat"),
            lambda ax: plots.plot_percentiles(ax, agg, "chat_stream", prefix="ttft_", what="TTFT"),
            lambda ax: plots.plot_cdf(ax, {"sync": np.array([1.0, 2.0, 3.0])}, "chat", 50),
            lambda ax: plots.plot_advantage(ax, decided.verdicts, "lead"),
            lambda ax: plots.plot_advantage(ax, decided.verdicts, "tail"),
            lambda ax: plots.plot_cpu_per_request(ax, decided.counted, decided.verdicts),
            lambda ax: plot_change(ax, table, "rps"),
        ]
        for ax, call in zip(axes.flat, calls, strict=True):
            assert call(ax) is ax
            # A title and both axis labels, also where y is categorical (scenario names).
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
            assert ax.has_data()
    finally:
        plt.close(fig)


def test_every_saved_chart_has_a_title_and_both_axis_labels(reported: Path) -> None:
    assert {name for name, *_ in SAVED_AXES} == EXPECTED_CHARTS
    unlabelled = [axes for axes in SAVED_AXES if not all(axes[1:])]
    assert unlabelled == []
    cpu = [axes for axes in SAVED_AXES if axes[0] == "cpu_per_request.png"]
    assert cpu and "(ms" in cpu[0][3]  # units on the axis


def test_throughput_chart_draws_ideal_and_threadpool_marker(agg: pd.DataFrame) -> None:
    fig, ax = plt.subplots()
    try:
        plots.plot_throughput(ax, agg, "chat")
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "ideal: users / 200 ms" in labels
        assert "threadpool tokens = 40" in labels
        assert "(successful requests/s)" in ax.get_ylabel()
    finally:
        plt.close(fig)


def test_plot_missing_column_lists_available(agg: pd.DataFrame) -> None:
    fig, ax = plt.subplots()
    try:
        with pytest.raises(MissingColumnError, match="available columns: .*'rps'"):
            plots.plot_percentiles(ax, agg.drop(columns=["p99_ms"]), "chat")
    finally:
        plt.close(fig)


def test_every_chart_rendered_and_non_trivial(reported: Path) -> None:
    charts = {p.name: p for p in (reported / "charts").glob("*.png")}
    assert set(charts) == EXPECTED_CHARTS
    for path in charts.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5_000, path.name
        # A drawn chart (text, axes, several styles' lines) uses many colours; a blank one, one.
        with Image.open(path) as image:
            assert len(image.convert("RGB").getcolors(maxcolors=4096) or []) > 16, path.name


def test_html_report_embeds_every_chart_and_the_verdict_table(reported: Path) -> None:
    page = (reported / "report.html").read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)
    assert len(images) == len(EXPECTED_CHARTS)
    assert "charts/" not in page  # nothing to fetch: opens from disk anywhere
    assert "<th>winner</th>" in page and "<th>FastAPI docs rule: what the data says</th>" in page
    assert "no clear winner" in page  # cpu: 388 vs 390 req/s
    assert "chat__sync-httpx__u200__r2" in page  # the invalid cell is listed
    assert "chat_stream__blocking-httpx__u200__r2" in page  # and the failed one
    assert "saturated load generator" in page
    assert "<code>fastapi</code>" in page  # versions from the manifest
    assert "2026-11-28 12:00:00 UTC" in page  # epoch start shown as a date
    assert SECRET not in page  # the API key in server_settings is never printed
    assert "<th>loop lag p99 ms</th>" in page  # the mechanism table
    assert "<th>why (mechanism seen in the server)</th>" in page
    assert "<code>blocking</code>: loop blocked (max lag 300 ms, p99 200 ms)" in page
    assert "<code>sync</code>: threadpool saturated (40/40 tokens, 160 waiting)" in page
    # The closing note: chat at its highest load, every style's lag, waiters and overhead.
    assert "In short, <code>chat</code> at 200 users: <code>sync</code> max loop lag 4.0 ms" in page


def test_markdown_report_links_every_chart(reported: Path) -> None:
    md = (reported / "report.md").read_text()
    assert md.startswith("# def or async def?")
    links = set(re.findall(r"\]\(charts/([^)]+)\)", md))
    assert links == EXPECTED_CHARTS
    assert "| scenario | users | judged by | winner |" in md


def test_report_without_raw_files_skips_the_distribution(tmp_path: Path) -> None:
    run = write_run(tmp_path, raw=False)
    # One scenario, without the mechanism columns and their charts, keeps the test fast.
    frame = pd.read_csv(run / "summary.csv", dtype=str, keep_default_na=False)
    frame[MECHANISM_COLUMNS] = ""
    frame[frame["scenario"] == "mixed"].to_csv(run / "summary.csv", index=False)
    files = write_report(run)
    names = {p.name for p in files.charts}
    assert not any(n.endswith("_cdf.png") for n in names) and "overview.png" in names
    assert "latency distribution skipped" in files.markdown.read_text()


def test_cli_error_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path, raw=False)
    (run / "summary.csv").write_text("scenario\nchat\n")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "summary.csv" in err and "Traceback" not in err


def test_direction_marks_noise() -> None:
    assert direction((1.5, 1.4, 1.6), 0.1) == "up"
    assert direction((0.5, 0.45, 0.55), 0.1) == "down"
    assert direction((1.05, 1.0, 1.1), 0.1) == "noise"


def test_compare_two_runs(reported: Path, tmp_path: Path) -> None:
    b = tmp_path / "tokens-200"
    shutil.copytree(reported, b)
    frame = pd.read_csv(b / "summary.csv", dtype=str, keep_default_na=False)
    faster = (frame["scenario"] == "chat") & (frame["variant"] == "sync")
    frame.loc[faster, "rps"] = (frame.loc[faster, "rps"].astype(float) * 1.6).astype(str)
    frame.to_csv(b / "summary.csv", index=False)
    table = compare_frames(aggregate(load_run(reported).summary), aggregate(load_run(b).summary))
    changed = table[table["rps_change"].isin(["up", "down"])]
    assert set(changed["scenario"]) == {"chat"} and set(changed["style"]) == {"sync"}
    assert (changed["rps_change"] == "up").all()
    # An invalid or failed repeat leaves one: no interval, so no change is claimed either way.
    single = table[table["rps_change"] == "one repeat"]
    assert list(zip(single["scenario"], single["style"], single["users"], strict=True)) == [
        ("chat", "sync", 200),
        ("chat_stream", "blocking", 200),
    ]
    assert main(["compare", str(reported), str(b)]) == 0
    out = b / f"compare-vs-{reported.name}"
    assert (out / "compare.png").stat().st_size > 15_000
    md = (out / "compare.md").read_text()
    assert "| `chat` | sync | 50 |" in md and "noise" in md
    assert (out / "compare.html").read_text().count("data:image/png;base64,") == 1


def test_report_with_no_valid_cell_still_renders_and_lists_every_warning(tmp_path: Path) -> None:
    run = write_run(tmp_path, raw=False)
    frame = pd.read_csv(run / "summary.csv", dtype=str, keep_default_na=False)
    frame["valid"] = "False"
    # Not the load side alone: no scenario may count these cells, even one judged by CPU/req.
    frame["invalid_reason"] = "reached 150 of 200 users"
    frame.to_csv(run / "summary.csv", index=False)
    files = write_report(run)
    assert files.charts == []
    md = files.markdown.read_text()
    assert "not enough valid cells" in md and "no valid cells, no charts" in md
    # Every invalid cell is listed, none cut off, under a heading with the group's count.
    invalid = frame[frame["status"] == "ok"]
    warnings = md[md.index("\n## Warnings") :]
    assert f"### invalid cell ({len(invalid)})" in warnings
    assert all(f"`{c}`: reached 150 of 200 users" in warnings for c in invalid["cell_id"])
    assert "more warnings" not in md
    # The opening counts them too.
    assert f"| invalid | {len(invalid)} ({len(invalid) / len(frame):.1%}) |" in md


# --- incomplete runs (issue 13): a banner at the top of the report and of the comparison -----

INTERRUPTED = "mixed__sync-none__u999__r1"


def small_run(root: Path) -> tuple[Path, list[str]]:
    """The fixture run cut to `mixed` (fast to report), its manifest planning exactly its cells."""
    run = write_run(root, raw=False)
    frame = pd.read_csv(run / "summary.csv", dtype=str, keep_default_na=False)
    frame[MECHANISM_COLUMNS] = ""
    frame = frame[frame["scenario"] == "mixed"]
    frame.to_csv(run / "summary.csv", index=False)
    ids = list(frame["cell_id"])
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "cells": ids}))
    for extra in {p.parent.name for p in run.glob("*/cell.json")} - set(ids):
        shutil.rmtree(run / extra)
    return run, ids


def interrupt(run: Path, ids: list[str]) -> str:
    """Make `run` look interrupted: one planned cell stopped mid-cell, one measured cell's row
    not written; returns the latter's id."""
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "cells": [*ids, INTERRUPTED]}))
    (run / INTERRUPTED).mkdir()
    (run / INTERRUPTED / "locust.log").write_text("")
    frame = pd.read_csv(run / "summary.csv", dtype=str, keep_default_na=False)
    frame[frame["cell_id"] != ids[0]].to_csv(run / "summary.csv", index=False)
    return ids[0]


def test_an_incomplete_run_opens_with_a_banner_listing_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, ids = small_run(tmp_path)
    unwritten = interrupt(run, ids)
    assert main(["report", str(run), "--reference", ""]) == 0
    md = (run / "report.md").read_text()
    top = md[: md.index("\n## ")]  # before the first section
    assert "**Incomplete run `fixture-run`" in top
    assert f"1 of the {len(ids) + 1} cells manifest.json plans was never measured" in top
    assert f"`{INTERRUPTED}`" in top and "stopped mid-cell" in top
    assert "1 cell folder holds a cell.json but no summary.csv row" in top
    assert f"`{unwritten}`" in top
    page = (run / "report.html").read_text()
    assert page.index("Incomplete run") < page.index("<h2>")
    assert f"<code>{INTERRUPTED}</code>" in page
    err = capsys.readouterr().err
    assert err.count("warning: run fixture-run is incomplete: ") == 2 and INTERRUPTED in err


def test_a_complete_run_has_no_banner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = small_run(tmp_path)
    assert main(["report", str(run), "--reference", ""]) == 0
    assert "Incomplete" not in (run / "report.md").read_text()
    assert "Incomplete" not in (run / "report.html").read_text()
    assert "warning" not in capsys.readouterr().err


def test_compare_names_the_incomplete_run_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = small_run(tmp_path / "a")
    b, ids = small_run(tmp_path / "b")
    interrupt(b, ids)
    assert main(["compare", str(a), str(b)]) == 0
    md = (b / f"compare-vs-{a.name}" / "compare.md").read_text()
    top = md[: md.index("\n## ")]
    assert "**Incomplete run B `fixture-run`" in top and f"`{INTERRUPTED}`" in top
    assert "run A" not in top
    err = capsys.readouterr().err
    assert "warning: run B fixture-run is incomplete: 1 of the" in err
