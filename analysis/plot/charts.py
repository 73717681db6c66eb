"""The per-scenario charts of a run as PNG files (throughput, latency, distribution, tokens,
probe, mechanisms, the threadpool timeline, the overview and CPU per request): builds figures,
calls the plot functions, saves. `Chart` and `save_chart` serve every section's charts too
(analysis.sections); analysis.report.render draws them all."""

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work on headless machines and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

import contract  # noqa: E402
from analysis.judge.transform import at_reference_tokens, excluded, usable  # noqa: E402
from analysis.judge.verdict import Verdict, Verdicts  # noqa: E402
from analysis.load.run import (  # noqa: E402
    CELL_FILE,
    METRICS_FILE,
    REQUESTS_FILE,
    Run,
    load_metrics,
    load_requests,
    load_window,
)
from analysis.plot import mechanism as plots_mechanism  # noqa: E402
from analysis.plot import plots  # noqa: E402
from analysis.vocabulary import THREADED  # noqa: E402

CHARTS_DIR = "charts"
DPI = 110
# The timeline: `def` at the highest load of the non-streaming proxy, where 40 tokens
# meet more users than threads.
TIMELINE_SCENARIO = "chat"


@dataclass(frozen=True)
class Chart:
    """One rendered chart: where it is, what it shows, and for which scenario ('' = all)."""

    path: Path
    title: str
    scenario: str
    caption: str


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    # Line charts use few colours: a 256-colour palette keeps them sharp at a third of the
    # bytes, which keeps the self-contained report.html small enough to commit.
    Image.open(buffer).convert("RGB").quantize(colors=256).save(path, optimize=True)


def scenario_charts(run: Run, decided: Verdicts, out_dir: Path) -> tuple[list[Chart], list[str]]:
    """Write the per-scenario and overview charts of `run` under `out_dir`; return them and
    notes on the charts skipped, and why."""
    agg, verdicts = decided.agg, decided.verdicts
    out_dir.mkdir(parents=True, exist_ok=True)
    charts: list[Chart] = []
    notes: list[str] = []
    bad = excluded(run.summary)
    for v in verdicts:
        s = v.scenario
        if agg[agg["scenario"] == s].empty:
            notes.append(f"{s}: no valid cells, no charts")
            continue
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        plots.plot_throughput(ax, agg, s, bad)
        charts.append(
            save_chart(
                fig,
                out_dir / f"{s}_throughput.png",
                f"{s}: throughput vs users",
                s,
                "Median over valid repeats; the band is the min-max spread; X = excluded cells.",
            )
        )
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        plots.plot_percentiles(ax, agg, s)
        charts.append(
            save_chart(
                fig,
                out_dir / f"{s}_latency.png",
                f"{s}: latency p50 / p99 vs users",
                s,
                "Whole-response latency; dashed p50, solid p99 with its min-max band. A point "
                "whose n is too small for its percentile is left out (the sample-count rule).",
            )
        )
        charts += _cdf_chart(run, v, out_dir, notes)
        # A percentile the sample rule left empty everywhere still leaves the other one to draw.
        if s == "chat_stream" or any(_has(agg, s, f"ttft_p{q}_ms") for q in (50, 99)):
            charts.append(_stream_chart(agg, s, out_dir))
        if any(_has(agg, s, f"probe_p{q}_ms") for q in (50, 99)):
            fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
            plots.plot_percentiles(ax, agg, s, prefix="probe_", what="probe (/hello) latency")
            charts.append(
                save_chart(
                    fig,
                    out_dir / f"{s}_probe.png",
                    f"{s}: probe latency vs users",
                    s,
                    "A light /hello user beside the load: how much one style stalls others.",
                )
            )
        charts += mechanism_charts(agg, s, out_dir)
    charts += threadpool_chart(run, out_dir, notes)
    if any(v.leader is not None for v in verdicts):
        fig, (left, right) = plt.subplots(
            1, 2, figsize=(13, 1.8 + 0.6 * len(verdicts)), layout="constrained"
        )
        plots.plot_advantage(left, verdicts, "lead")
        plots.plot_advantage(right, verdicts, "tail")
        fig.suptitle("Leader vs runner-up at each scenario's highest comparable load")
        charts.insert(
            0,
            save_chart(
                fig,
                out_dir / "overview.png",
                "Overview: the best style's advantage",
                "",
                "Solid bars: a clear winner; hatched: no clear winner. Whiskers: the repeat "
                "interval. Grey: each scenario's noise threshold, measured from its repeats.",
            ),
        )
    charts += cpu_chart(decided, out_dir)
    return charts, notes


def cpu_chart(decided: Verdicts, out_dir: Path) -> list[Chart]:
    """Server CPU per request by style, per scenario at its verdict's load, if recorded."""
    agg = decided.counted
    shown = [v for v in decided.verdicts if v.users is not None]
    if "cpu_ms_per_req" not in agg or not shown or agg["cpu_ms_per_req"].isna().all():
        return []
    fig, ax = plt.subplots(figsize=(max(8.0, 1.4 * len(shown) + 2), 5), layout="constrained")
    plots.plot_cpu_per_request(ax, agg, shown)
    return [
        save_chart(
            fig,
            out_dir / "cpu_per_request.png",
            "Server CPU per request by style",
            "",
            "Server CPU ms per completed request at each verdict's load (median, whiskers = "
            "repeat interval); lower is cheaper. Scenarios judged by CPU per request count "
            "cells where only the load generator saturated.",
        )
    ]


def save_chart(fig: Figure, path: Path, title: str, scenario: str, caption: str) -> Chart:
    """Write `fig` to `path` (and close it): the chart, titled and captioned for the report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    return Chart(path, title, scenario, caption)


def _stream_chart(agg: pd.DataFrame, scenario: str, out_dir: Path) -> Chart:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    plots.plot_percentiles(left, agg, scenario, prefix="ttft_", what="time to first token")
    plots.plot_percentiles(right, agg, scenario, prefix="itl_", what="inter-token latency")
    return save_chart(
        fig,
        out_dir / f"{scenario}_tokens.png",
        f"{scenario}: TTFT and ITL vs users",
        scenario,
        "What a chat user feels: wait for the first token, then the gaps.",
    )


def cdf_samples(
    run: Run, scenario: str, users: int, kind: str = "request"
) -> dict[str, np.ndarray]:
    """Latencies per style at one load, pooled over valid repeats; {} if no raw files.

    The same population as the tables' percentiles: requests that started in the cell's window,
    `ok` or `censored` (at their lower bound); failed ones are reported apart.
    """
    cells = usable(run.summary)
    cells = cells[(cells["scenario"] == scenario) & (cells["users"] == users)]
    samples: dict[str, list[np.ndarray]] = {}
    for row in cells.itertuples():
        path = run.path / str(row.cell_id) / REQUESTS_FILE
        if not path.exists():
            continue
        frame = load_requests(path, kinds=[kind])
        keep = frame["ok"]
        outcome = frame["outcome"].fillna("") if "outcome" in frame else pd.Series(dtype=str)
        if (outcome != "").any():  # runs from before outcomes keep `ok`
            keep = outcome.isin([contract.OK, contract.CENSORED])
        window = load_window(run.path / str(row.cell_id) / CELL_FILE)
        if window is not None and "ts" in frame and frame["ts"].notna().any():
            keep &= (frame["ts"] >= window[0]) & (frame["ts"] < window[1])
        samples.setdefault(str(row.style), []).append(frame.loc[keep, "latency_ms"].to_numpy())
    return {style: np.concatenate(parts) for style, parts in samples.items()}


def _cdf_chart(run: Run, v: Verdict, out_dir: Path, notes: list[str]) -> list[Chart]:
    if v.users is None:
        return []
    samples = cdf_samples(run, v.scenario, v.users)
    if not any(len(x) for x in samples.values()):
        notes.append(
            f"{v.scenario}: no raw `requests.csv` at {v.users} users, latency distribution skipped"
        )
        return []
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    plots.plot_cdf(ax, samples, v.scenario, v.users)
    return [
        save_chart(
            fig,
            out_dir / f"{v.scenario}_cdf.png",
            f"{v.scenario}: latency distribution at {v.users} users",
            v.scenario,
            "Every successful request of the valid repeats; further right = slower.",
        )
    ]


def _has(agg: pd.DataFrame, scenario: str, column: str) -> bool:
    return column in agg and agg.loc[agg["scenario"] == scenario, column].notna().any()


def mechanism_charts(agg: pd.DataFrame, scenario: str, out_dir: Path) -> list[Chart]:
    """Loop lag, overhead and server CPU vs users for one scenario, each only if recorded."""
    out: list[Chart] = []
    specs = (
        (
            "loop_lag_max_ms",
            plots_mechanism.plot_loop_lag,
            "loop_lag",
            "event-loop lag vs users",
            "How late the event loop ran a 10 ms timer: solid max, dashed p99. Above the "
            "dash-dot line a callback held the loop; the blocking variant shows here.",
        ),
        (
            "overhead_p99_ms",
            plots_mechanism.plot_overhead,
            "overhead",
            "proxy overhead vs users",
            "Time in the app minus time waiting on the upstream or DB (Server-Timing): what the "
            "handler style itself costs per request, queueing for threads or the loop included.",
        ),
        (
            "server_cpu_pct",
            plots_mechanism.plot_server_cpu,
            "cpu",
            "server CPU vs users",
            "Mean CPU of the server process; the black line is one core, the most one worker's "
            "Python can use. A style that reaches it first is CPU-bound first.",
        ),
    )
    for column, plot, suffix, title, caption in specs:
        if not _has(agg, scenario, column):
            continue
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        plot(ax, agg, scenario)
        out.append(
            save_chart(
                fig, out_dir / f"{scenario}_{suffix}.png", f"{scenario}: {title}", scenario, caption
            )
        )
    return out


def timeline_cell(run: Run, scenario: str = TIMELINE_SCENARIO) -> pd.Series | None:
    """The `sync` cell at the highest valid load of `scenario`, the first repeat with metrics."""
    rows = at_reference_tokens(usable(run.summary))
    rows = rows[(rows["scenario"] == scenario) & (rows["style"] == THREADED)]
    if rows.empty:
        return None
    top = rows[rows["users"] == rows["users"].max()].sort_values("repeat")
    with_metrics = [
        r for _, r in top.iterrows() if (run.path / str(r["cell_id"]) / METRICS_FILE).exists()
    ]
    return with_metrics[0] if with_metrics else top.iloc[0]


def threadpool_chart(run: Run, out_dir: Path, notes: list[str]) -> list[Chart]:
    """`def`'s threadpool over time at chat's highest load, or a note saying why it is absent."""
    cell = timeline_cell(run)
    if cell is None:
        return []
    cell_dir = run.path / str(cell["cell_id"])
    if not (cell_dir / METRICS_FILE).exists():
        notes.append(
            f"{TIMELINE_SCENARIO}: no `{METRICS_FILE}` in `{cell['cell_id']}`, "
            "threadpool timeline skipped"
        )
        return []
    metrics = load_metrics(cell_dir / METRICS_FILE)
    if not metrics["metric"].isin([plots_mechanism.TOKENS_IN_USE]).any():
        notes.append(f"{TIMELINE_SCENARIO}: `{cell['cell_id']}` recorded no threadpool gauges")
        return []
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    title = (
        f"{TIMELINE_SCENARIO}: `def` threadpool at {cell['users']} users (repeat {cell['repeat']})"
    )
    plots_mechanism.plot_threadpool(ax, metrics, title, load_window(cell_dir / CELL_FILE))
    return [
        save_chart(
            fig,
            out_dir / f"{TIMELINE_SCENARIO}_threadpool.png",
            title,
            TIMELINE_SCENARIO,
            "anyio's tokens in use and the tasks queued for one, scraped once a second: flat at "
            "the limit with a queue behind it means `def` ran out of threads.",
        )
    ]
