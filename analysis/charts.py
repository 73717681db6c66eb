"""Render every chart of a run to PNG files: builds figures, calls the plot functions, saves."""

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work on headless machines and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis import plots  # noqa: E402
from analysis.load import REQUESTS_FILE, Run, load_requests  # noqa: E402
from analysis.transform import excluded, usable  # noqa: E402
from analysis.verdict import Verdict  # noqa: E402

CHARTS_DIR = "charts"
DPI = 110


@dataclass(frozen=True)
class Chart:
    """One rendered chart: where it is, what it shows, and for which scenario ('' = all)."""

    path: Path
    title: str
    scenario: str
    caption: str


@dataclass(frozen=True)
class Rendered:
    """Charts written, and notes on charts skipped (e.g. raw per-request files absent)."""

    charts: list[Chart]
    notes: list[str]


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def render_all(run: Run, agg: pd.DataFrame, verdicts: list[Verdict], out_dir: Path) -> Rendered:
    """Write every chart of `run` under `out_dir` and say which were skipped and why."""
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
            _chart(
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
            _chart(
                fig,
                out_dir / f"{s}_latency.png",
                f"{s}: latency p50 / p99 vs users",
                s,
                "Whole-response latency; dashed p50, solid p99 with its min-max band.",
            )
        )
        charts += _cdf_chart(run, v, out_dir, notes)
        if s == "chat_stream" or agg.loc[agg["scenario"] == s, "ttft_p99_ms"].notna().any():
            charts.append(_stream_chart(agg, s, out_dir))
        if "probe_p99_ms" in agg and agg.loc[agg["scenario"] == s, "probe_p99_ms"].notna().any():
            fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
            plots.plot_percentiles(ax, agg, s, prefix="probe_", what="probe (/hello) latency")
            charts.append(
                _chart(
                    fig,
                    out_dir / f"{s}_probe.png",
                    f"{s}: probe latency vs users",
                    s,
                    "A light /hello user beside the load: how much one style stalls others.",
                )
            )
        if (
            "loop_lag_p99_ms" in agg
            and agg.loc[agg["scenario"] == s, "loop_lag_p99_ms"].notna().any()
        ):
            fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
            plots.plot_metric(
                ax,
                agg,
                s,
                "loop_lag_p99_ms",
                "event-loop lag p99 (ms, log scale)",
                "event-loop lag vs users (server's own /metrics)",
            )
            charts.append(
                _chart(
                    fig,
                    out_dir / f"{s}_loop_lag.png",
                    f"{s}: event-loop lag vs users",
                    s,
                    "How late the server's event loop ran its callbacks: blocking shows here.",
                )
            )
    if any(v.leader is not None for v in verdicts):
        fig, (left, right) = plt.subplots(
            1, 2, figsize=(13, 1.8 + 0.6 * len(verdicts)), layout="constrained"
        )
        plots.plot_advantage(left, verdicts, "rps")
        plots.plot_advantage(right, verdicts, "p99")
        fig.suptitle("Leader vs runner-up at each scenario's highest comparable load")
        charts.insert(
            0,
            _chart(
                fig,
                out_dir / "overview.png",
                "Overview: the best style's advantage",
                "",
                "Solid bars: a clear winner; hatched: inside the noise. Whiskers: spread.",
            ),
        )
    return Rendered(charts, notes)


def _chart(fig: Figure, path: Path, title: str, scenario: str, caption: str) -> Chart:
    _save(fig, path)
    return Chart(path, title, scenario, caption)


def _stream_chart(agg: pd.DataFrame, scenario: str, out_dir: Path) -> Chart:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    plots.plot_percentiles(left, agg, scenario, prefix="ttft_", what="time to first token")
    plots.plot_percentiles(right, agg, scenario, prefix="itl_", what="inter-token latency")
    return _chart(
        fig,
        out_dir / f"{scenario}_tokens.png",
        f"{scenario}: TTFT and ITL vs users",
        scenario,
        "What a chat user feels: wait for the first token, then the gaps.",
    )


def cdf_samples(
    run: Run, scenario: str, users: int, kind: str = "request"
) -> dict[str, np.ndarray]:
    """Successful latencies per style at one load, pooled over valid repeats; {} if no raw files."""
    cells = usable(run.summary)
    cells = cells[(cells["scenario"] == scenario) & (cells["users"] == users)]
    samples: dict[str, list[np.ndarray]] = {}
    for row in cells.itertuples():
        path = run.path / str(row.cell_id) / REQUESTS_FILE
        if not path.exists():
            continue
        frame = load_requests(path, kinds=[kind])
        samples.setdefault(str(row.style), []).append(
            frame.loc[frame["ok"], "latency_ms"].to_numpy()
        )
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
        _chart(
            fig,
            out_dir / f"{v.scenario}_cdf.png",
            f"{v.scenario}: latency distribution at {v.users} users",
            v.scenario,
            "Every successful request of the valid repeats; further right = slower.",
        )
    ]
