"""Issue 5's analysis: metrics.csv, the why column, mechanism plots and the threadpool sweep."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from analysis.judge.sweep import (  # noqa: E402
    Gap,
    aggregate_sweep,
    gap_text,
    gaps,
    reference_row,
    sweep_scenarios,
)
from analysis.judge.transform import Stall, aggregate, at_reference_tokens  # noqa: E402
from analysis.judge.verdict import Verdict  # noqa: E402
from analysis.judge.why import (  # noqa: E402
    NOTHING,
    Limits,
    explain,
    explained_styles,
    mechanisms,
)
from analysis.load import (  # noqa: E402
    RunFormatError,
    add_style,  # noqa: E402
    load_metrics,
    load_run,
    load_window,
    metric_series,
)
from analysis.plot import mechanism as pm  # noqa: E402
from analysis.plot.charts import threadpool_chart  # noqa: E402
from analysis.report import write_report  # noqa: E402
from analysis.report.why_blocks import why_column  # noqa: E402
from tests.analysis_fixtures import MANIFEST, T0, write_run, write_sweep_run  # noqa: E402

SYNC_200 = "chat__sync-httpx__u200__r1"


def at(**styles: dict[str, float]) -> pd.DataFrame:
    """One scenario at one load, indexed by style, as transform.at_users returns it."""
    return pd.DataFrame.from_dict(styles, orient="index")


# --- the why column --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"loop_lag_max_ms": 480.0, "loop_lag_p99_ms": 250.0},
            ["loop blocked (max lag 480 ms, p99 250 ms)"],
        ),
        ({"loop_lag_max_ms": 100.0}, ["loop blocked (max lag 100 ms)"]),  # the threshold counts
        ({"loop_lag_max_ms": 99.9, "loop_lag_p99_ms": 50.0}, []),
        (
            {"threadpool_peak_in_use": 40, "threadpool_tokens": 40, "threadpool_peak_waiting": 120},
            ["threadpool saturated (40/40 tokens, 120 waiting)"],
        ),
        # Every token busy but nobody queued: a pool sized right, not a bottleneck.
        ({"threadpool_peak_in_use": 40, "threadpool_tokens": 40, "threadpool_peak_waiting": 0}, []),
        # Waiters while tokens are free contradict saturation (a sampling artefact).
        ({"threadpool_peak_in_use": 30, "threadpool_tokens": 40, "threadpool_peak_waiting": 5}, []),
        ({"http_pool_peak_waiting": 7.0}, ["HTTP pool exhausted (7 waiting)"]),
        ({"http_pool_peak_waiting": 0.0}, []),
        ({"server_cpu_pct": 98.0}, ["CPU-bound (server 98% of a core)"]),
        ({"server_cpu_pct": 89.0}, []),
        ({"db_pool_peak_checked_out": 15.0}, []),  # capacity unknown: no claim
        ({"server_cpu_pct": math.nan, "loop_lag_max_ms": math.nan}, []),
        (
            {"loop_lag_max_ms": 300.0, "server_cpu_pct": 95.0, "http_pool_peak_waiting": 3.0},
            [
                "loop blocked (max lag 300 ms)",
                "HTTP pool exhausted (3 waiting)",
                "CPU-bound (server 95% of a core)",
            ],
        ),
    ],
)
def test_mechanisms_thresholds(row: dict[str, float], expected: list[str]) -> None:
    assert mechanisms(pd.Series(row)) == expected


def test_db_pool_exhausted_against_the_manifest_capacity() -> None:
    limits = Limits.from_manifest({"server_settings": {"db_pool_size": 5, "db_max_overflow": 10}})
    assert limits.db_pool_capacity == 15
    row = pd.Series({"db_pool_peak_checked_out": 15.0})
    assert mechanisms(row, limits) == ["DB pool exhausted (15/15 connections)"]
    assert mechanisms(pd.Series({"db_pool_peak_checked_out": 14.0}), limits) == []


def test_stalled_needs_zero_throughput_and_an_idle_server() -> None:
    stalled = mechanisms(pd.Series({"rps": 0.0, "server_cpu_pct": 2.6}))
    assert stalled == ["stalled (no request finished, server 2.6% of a core)"]
    assert mechanisms(pd.Series({"rps": 0.0, "server_cpu_pct": 50.0})) == []
    assert mechanisms(pd.Series({"rps": 3.0, "server_cpu_pct": 2.6})) == []
    assert Limits.from_manifest(MANIFEST).db_pool_capacity == 5  # no overflow recorded: 0
    assert Limits.from_manifest({}).db_pool_capacity is None


def test_explain_names_losers_and_blocking_not_the_winner() -> None:
    frame = at(
        sync={
            "threadpool_peak_in_use": 40,
            "threadpool_tokens": 40,
            "threadpool_peak_waiting": 160,
        },
        # The winner at 99% CPU is not why anyone lost: not listed.
        **{"async": {"server_cpu_pct": 99.0, "loop_lag_max_ms": 3.0}},
        blocking={"loop_lag_max_ms": 480.0, "loop_lag_p99_ms": 250.0},
    )
    assert explain(frame, ("async",)) == (
        "`sync`: threadpool saturated (40/40 tokens, 160 waiting)\n"
        "`blocking`: loop blocked (max lag 480 ms, p99 250 ms)"
    )


def test_explain_dash_when_nothing_crosses() -> None:
    frame = at(
        sync={"threadpool_peak_in_use": 10, "threadpool_tokens": 40, "server_cpu_pct": 40.0},
        **{"async": {"loop_lag_max_ms": 4.0, "server_cpu_pct": 30.0}},
    )
    assert explain(frame, ("async",)) == NOTHING


def test_explained_styles() -> None:
    frame = at(sync={}, **{"async": {}}, blocking={})
    assert explained_styles(frame, ("async",)) == ["sync", "blocking"]
    # Tied with the winner (/hello), blocking still gets a look; no clear winner: everyone.
    assert explained_styles(frame, ("async", "blocking")) == ["sync", "blocking"]
    assert explained_styles(frame, ()) == ["sync", "async", "blocking"]


def test_why_column_says_when_nothing_was_recorded() -> None:
    def agg(**extra: float) -> pd.DataFrame:
        rows = [
            {"scenario": "hello", "style": s, "users": 50, "rps": 1.0, **extra}
            for s in ("sync", "async")
        ]
        return pd.DataFrame(rows)

    v = Verdict(
        scenario="hello", threshold=0.1, users=50, leader="async", clear=True, tied=("async",)
    )
    none = Verdict(scenario="cpu", threshold=0.1)
    assert why_column(agg(), [v, none], Limits()) == {"hello": "not recorded", "cpu": "n/a"}
    only_cpu = why_column(agg(server_cpu_pct=50.0), [v], Limits())
    assert only_cpu == {"hello": f"{NOTHING} (only server CPU recorded)"}
    scraped = why_column(agg(server_cpu_pct=50.0, loop_lag_max_ms=3.0), [v], Limits())
    assert scraped == {"hello": NOTHING}
    # A style that stalled at the verdict's load is named first, with its evidence.
    stall = Stall("hello", "blocking", 50, 3, 3, "threadpool 40/40 in use, 160 waiting")
    named = why_column(agg(server_cpu_pct=50.0, loop_lag_max_ms=3.0), [v], Limits(), [stall])
    assert named == {
        "hello": "`blocking` stalled at 50 users in 3 of 3 repeats: threadpool 40/40 in use, "
        "160 waiting"
    }


# --- metrics.csv -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("mech"), raw=False)


def test_load_metrics_typed_and_sorted(run_dir: Path) -> None:
    m = load_metrics(run_dir / SYNC_200 / "metrics.csv")
    assert list(m.columns) == ["ts", "metric", "labels", "value"]
    assert m["ts"].dtype == "float64" and m["value"].dtype == "float64"
    assert m["ts"].is_monotonic_increasing
    in_use = metric_series(m, "lab_threadpool_tokens_in_use")
    assert len(in_use) == 15 and in_use.max() == 40
    assert metric_series(m, "lab_http_pool_connections", "state=waiting").max() == 100
    assert metric_series(m, "no_such_metric").empty
    assert load_window(run_dir / SYNC_200 / "cell.json") == (T0 + 3, T0 + 13)


def test_load_metrics_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    with pytest.raises(RunFormatError, match="metrics.csv: file is missing"):
        load_metrics(path)
    path.write_text("ts,metric,labels,value\n1.0,lab_x,,1\n2.0,lab_x,,lots\n")
    with pytest.raises(RunFormatError, match=r"metrics.csv: column `value` .* line 3: 'lots'"):
        load_metrics(path)
    path.write_text("ts,metric,value\n1.0,lab_x,1\n")
    with pytest.raises(RunFormatError, match=r"missing required column\(s\) \['labels'\]"):
        load_metrics(path)
    path.write_text("ts,metric,labels,value\n")  # no scrape succeeded: empty, not an error
    assert load_metrics(path).empty
    path.write_text("")
    with pytest.raises(RunFormatError, match="file is empty"):
        load_metrics(path)


def test_malformed_metrics_fails_the_timeline_naming_the_file(tmp_path: Path) -> None:
    run = write_run(tmp_path, raw=False)
    (run / SYNC_200 / "metrics.csv").write_text("ts,metric,labels,value\nnoon,x,,1\n")
    with pytest.raises(RunFormatError, match=f"{SYNC_200}/metrics.csv: column `ts`"):
        threadpool_chart(load_run(run), tmp_path / "charts", [])


def test_missing_metrics_is_a_note_not_an_error(tmp_path: Path) -> None:
    run = write_run(tmp_path, raw=False)
    (run / SYNC_200 / "metrics.csv").unlink()
    notes: list[str] = []
    assert threadpool_chart(load_run(run), tmp_path / "charts", notes) == []
    assert notes == [f"chat: no `metrics.csv` in `{SYNC_200}`, threadpool timeline skipped"]


# --- plots -----------------------------------------------------------------------------------


def test_mechanism_plots_draw_on_the_given_ax(run_dir: Path) -> None:
    run = load_run(run_dir)
    agg = aggregate(run.summary)
    metrics = load_metrics(run_dir / SYNC_200 / "metrics.csv")
    sweep = aggregate_sweep(load_run(write_sweep_run(run_dir.parent)).summary)
    fig, axes = plt.subplots(2, 3)
    try:
        calls = [
            lambda ax: pm.plot_loop_lag(ax, agg, "chat"),
            lambda ax: pm.plot_overhead(ax, agg, "chat"),
            lambda ax: pm.plot_server_cpu(ax, agg, "cpu"),
            lambda ax: pm.plot_threadpool(ax, metrics, "t", (T0 + 3, T0 + 13)),
            lambda ax: pm.plot_sweep(ax, sweep, "chat", "rps"),
            lambda ax: pm.plot_sweep(ax, sweep, "chat", "p99_ms"),
        ]
        for ax, call in zip(axes.flat, calls, strict=True):
            assert call(ax) is ax
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
            assert ax.has_data()
        legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes.flat]
        assert "loop blocked: 100 ms" in legends[0]
        assert "100% = one core" in legends[2]
        assert "token limit (40)" in legends[3] and "tasks waiting for a token" in legends[3]
        assert "async: async def, 200 users" in legends[4] and "anyio default: 40" in legends[4]
        assert axes.flat[4].get_xscale() == "log"
    finally:
        plt.close(fig)


# --- the threadpool sweep --------------------------------------------------------------------


def test_reference_tokens_keep_one_count_per_style() -> None:
    rows = [
        {"scenario": "chat", "variant": v, "client": "httpx", "users": 50, "threadpool_tokens": t}
        for v, t in (("sync", 10), ("sync", 40), ("sync", 400), ("async", 400))
    ]
    frame = add_style(pd.DataFrame(rows).astype({"threadpool_tokens": "Int64"}))
    kept = at_reference_tokens(frame)
    # `sync` at the default 40; `async`, run at one count only, keeps it.
    assert sorted(zip(kept["style"], kept["threadpool_tokens"], strict=True)) == [
        ("async", 400),
        ("sync", 40),
    ]
    no_default = frame[frame["threadpool_tokens"] != 40]
    assert set(at_reference_tokens(no_default)["threadpool_tokens"]) == {10, 400}  # tie: lowest
    plain = frame[frame["threadpool_tokens"] == 40]
    assert at_reference_tokens(plain) is plain


def test_sweep_run_loads_and_measures_the_gap(tmp_path: Path) -> None:
    run = load_run(write_sweep_run(tmp_path))  # same cell at 4 token counts: not duplicates
    assert sweep_scenarios(run.summary) == ["chat"]
    agg = aggregate(run.summary)
    assert set(agg.loc[agg["style"] == "sync", "threadpool_tokens"]) == {40}
    sweep = aggregate_sweep(run.summary)
    assert sorted(sweep.loc[sweep["style"] == "sync", "threadpool_tokens"].unique()) == [
        10,
        40,
        100,
        400,
    ]
    (low, high) = gaps(sweep, "chat")
    assert (high.users, high.default_tokens, high.best_tokens) == (200, 40, 400)
    expected = (high.best_rps - high.default_rps) / (high.async_rps - high.default_rps)
    assert high.closed == pytest.approx(expected) and 0 < expected < 1
    assert f"accounts for {expected:.0%} of the gap" in gap_text(high)
    assert low.best_tokens == 100  # past users, more threads only add contention


def gap(best_tokens: int, best_rps: float, async_rps: float | None) -> Gap:
    """`def` at 40 tokens: 100 req/s, p99 500 ms, at 50 users."""
    return Gap("chat", 50, 40, 100.0, 500.0, best_tokens, best_rps, 400.0, async_rps, 600.0)


def test_gap_text_edge_cases() -> None:
    same = gap(40, 100.0, None)
    assert "no other token count did better" in gap_text(same)
    assert "no `async def` cell" in gap_text(same)
    ahead = gap(100, 120.0, 90.0)
    assert ahead.closed is None and "not behind `async def`" in gap_text(ahead)
    assert "close the whole gap" in gap_text(gap(400, 210.0, 200.0))
    assert gap(100, 150.0, 200.0).closed == pytest.approx(0.5)


def test_sweep_report_section_and_chart(tmp_path: Path) -> None:
    run = write_sweep_run(tmp_path, mechanism=False)
    files = write_report(run)
    names = {p.name for p in files.charts}
    assert names == {
        "overview.png",
        "cpu_per_request.png",
        "chat_throughput.png",
        "chat_latency.png",
        "chat_threadpool_sweep.png",
    }
    md = files.markdown.read_text()
    assert "## Threadpool sweep: how much of `def`'s gap is the default of 40" in md
    assert "](charts/chat_threadpool_sweep.png)" in md
    assert "best at 400 tokens" in md
    # No mechanism recorded and no metrics.csv: said plainly, no mechanism chart attempted.
    assert "| not recorded |" in md
    assert (
        "no `metrics.csv` in `chat__sync-httpx__u200__t040__r1`, threadpool timeline skipped" in md
    )


def test_sweep_compares_def_with_the_fastest_async_client() -> None:
    sweep = pd.DataFrame(
        [
            ("chat", "sync", 200, 40, 400.0, 600.0),
            ("chat", "sync", 200, 400, 420.0, 500.0),
            ("chat", "async", 200, 40, 250.0, 1000.0),
            ("chat", "async (aiohttp)", 200, 40, 800.0, 350.0),
        ],
        columns=["scenario", "style", "users", "threadpool_tokens", "rps", "p99_ms"],
    )
    ref = reference_row(sweep, "chat", 200)
    assert ref is not None and ref["style"] == "async (aiohttp)"
    (gap,) = gaps(sweep, "chat")
    assert gap.async_style == "async (aiohttp)"
    assert gap.closed == pytest.approx(20 / 400)
