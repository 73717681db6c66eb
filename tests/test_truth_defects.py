"""Issue 21's defects in what the lab says, each pinned where the number is written: the sample
rule in summary.csv (every committed reference obeys it), `served_rps` beside `rps` in a rate
cell that drains (and on the console line), and `--rate` alone running rate cells only."""

import re
from pathlib import Path

import pandas as pd
import pytest

import contract
from contract.cell import CellCpu, CellMetrics, CellResult
from loadtests.cli import BenchOptions
from loadtests.runner import describe
from loadtests.summary import load_requests, summarize_requests

REPO = Path(__file__).resolve().parent.parent
REFERENCE_SUMMARIES = sorted((REPO / "results" / "reference").rglob("summary.csv"))


@pytest.mark.parametrize(
    "path", REFERENCE_SUMMARIES, ids=[str(p.parent.relative_to(REPO)) for p in REFERENCE_SUMMARIES]
)
def test_no_committed_percentile_stands_on_fewer_samples_than_it_needs(path: Path) -> None:
    summary = pd.read_csv(path)
    if "status" in summary:
        summary = summary[summary["status"] == "ok"]
    for column, (q, count) in contract.PERCENTILE_RULE.items():
        if column not in summary or count not in summary:
            continue
        shown = summary[summary[column].notna() & summary[count].notna()]
        short = shown[shown[count] < contract.min_samples(q)]
        assert short.empty, f"{path}: {column} from {list(short[count])} samples"
        # The exact value is kept under its own name (empty only where there was no sample).
        raw = contract.raw_column(column)
        assert raw in summary, f"{path}: no {raw}"
        gone = summary[summary[column].isna() & (summary[count] > 0)]
        assert gone[raw].notna().all(), f"{path}: {column} dropped without its raw value"


def rows(tmp_path: Path, items: list[tuple[float, float]]) -> pd.DataFrame:
    path = tmp_path / "requests.csv"
    lines = [",".join(contract.RAW_COLUMNS)]
    for ts, ms in items:
        lines.append(f"{ts},request,GET /x,{ms},1,ok,,,,")
    path.write_text("\n".join(lines) + "\n")
    return load_requests(path)


def test_served_rps_counts_what_ended_in_the_window(tmp_path: Path) -> None:
    # A server serving 2/s offered 10/s for 10 s: every arrival of the window is answered,
    # most of them long after it, during the drain. `rps` counts them; `served_rps` does not.
    arrivals = [(100 + i / 10, 500 * i) for i in range(100)]
    got = summarize_requests(rows(tmp_path, arrivals), 100.0, 110.0)
    assert got["rps"] == pytest.approx(10.0)
    ended_inside = sum(1 for ts, ms in arrivals if ts + ms / 1000 < 110.0)
    assert got["served_rps"] == pytest.approx(ended_inside / 10) and got["served_rps"] < 2.1


def test_a_rate_cell_s_console_line_shows_offered_sent_and_served_side_by_side() -> None:
    # The cell: `blocking` offered 40 req/s for 6 s serves 19/s (p50 8.4 s); `rps`,
    # the window's arrivals answered ok (some in the drain), reads 41.8 as if it kept up.
    result = CellResult(
        cell_id="chat__blocking-httpx__rps0040__r1",
        scenario="chat",
        variant="blocking",
        client="httpx",
        users=500,
        offered_rps=40,
        repeat=1,
        status="ok",
        valid=True,
        cpu=CellCpu(loadgen_pct=20.0, server_pct=99.0),
        metrics=CellMetrics(
            requests=251,
            ok=251,
            errors=0,
            timeouts=0,
            censored=0,
            rps=41.8,
            served_rps=19.0,
            scheduled=240,
            sent=239,
            achieved_rps=39.8,
            latency_n=251,
            p50_ms=8400.0,
            p99_ms_raw=11800.0,
        ),
    )
    line = describe(result)
    assert re.search(r"offered=40 +sent=39\.8/s +served=19\.0/s", line), line
    assert "-(n=251)" in line  # no p99 from 251 samples


def test_rate_alone_runs_no_closed_loop_levels(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    BenchOptions.add_cli_args(parser)
    only_rate = BenchOptions.from_cli_args(
        parser.parse_args(["--out", str(tmp_path), "--rate", "40"])
    )
    assert only_rate.spec().users == [] and only_rate.spec().rates == [40]
    both = BenchOptions.from_cli_args(
        parser.parse_args(["--out", str(tmp_path), "--rate", "40", "--users", "10"])
    )
    assert both.spec().users == [10]
