"""Render every chart of a run to PNG files: builds figures, calls the plot functions, saves."""

import io
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work on headless machines and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

import contract  # noqa: E402
from analysis.judge.capacity import capacities, rate_cells, rate_points, run_slo  # noqa: E402
from analysis.judge.clients import client_scenarios, client_table  # noqa: E402
from analysis.judge.databases import database_table, db_scenarios, has_postgres  # noqa: E402
from analysis.judge.stalls import stall_scenarios, stall_table  # noqa: E402
from analysis.judge.sweep import SWEPT, aggregate_sweep, sweep_scenarios  # noqa: E402
from analysis.judge.transform import at_reference_tokens, excluded, usable  # noqa: E402
from analysis.judge.verdict import Judgement, Verdict  # noqa: E402
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
from analysis.plot.capacity import capacity_caption, hockey  # noqa: E402
from analysis.plot.clients import plot_clients  # noqa: E402
from analysis.plot.databases import plot_databases  # noqa: E402
from analysis.plot.stalls import plot_stall_rps  # noqa: E402

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


@dataclass(frozen=True)
class Rendered:
    """Charts written, and notes on charts skipped (e.g. raw per-request files absent)."""

    charts: list[Chart]
    notes: list[str]
    # The threadpool sweep's charts, shown in their own report section.
    sweep: list[Chart] = field(default_factory=list)
    # The stalls section's charts (`make bench-stalls`), one per scenario.
    stalls: list[Chart] = field(default_factory=list)
    # The "Which HTTP client" section's chart (`make bench-clients`).
    clients: list[Chart] = field(default_factory=list)
    # The capacity section's hockey sticks, one per scenario with rate cells.
    capacity: list[Chart] = field(default_factory=list)
    # The "SQLite vs PostgreSQL" section's charts, one per DB scenario (`make bench-pg`).
    databases: list[Chart] = field(default_factory=list)


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    # Line charts use few colours: a 256-colour palette keeps them sharp at a third of the
    # bytes, which keeps the self-contained report.html small enough to commit.
    Image.open(buffer).convert("RGB").quantize(colors=256).save(path, optimize=True)


def render_all(run: Run, judgement: Judgement, out_dir: Path) -> Rendered:
    """Write every chart of `run` under `out_dir` and say which were skipped and why."""
    agg, verdicts = judgement.agg, judgement.verdicts
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
                "Whole-response latency; dashed p50, solid p99 with its min-max band. A point "
                "whose n is too small for its percentile is left out (the sample-count rule).",
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
            _chart(
                fig,
                out_dir / "overview.png",
                "Overview: the best style's advantage",
                "",
                "Solid bars: a clear winner; hatched: no clear winner. Whiskers: the repeat "
                "interval. Grey: each scenario's noise threshold, measured from its repeats.",
            ),
        )
    charts += cpu_chart(judgement, out_dir)
    return Rendered(
        charts,
        notes,
        sweep_charts(run, out_dir),
        stall_charts(run, out_dir),
        client_charts(run, out_dir),
        capacity_charts(run, out_dir),
        database_charts(run, out_dir),
    )


def capacity_charts(run: Run, out_dir: Path) -> list[Chart]:
    """Per scenario with rate cells: latency against offered rate per style, the SLO and each
    style's capacity (the hockey stick)."""
    if run.rates.empty:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    slo = run_slo(run.manifest, run.capacity)
    cells = rate_cells(run.rates, slo)
    points = rate_points(cells)
    caps = capacities(run.capacity, cells)
    out: list[Chart] = []
    for s in dict.fromkeys(points["scenario"]):
        mine = [c for c in caps if c.scenario == s]
        fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
        hockey(ax, points[points["scenario"] == s], slo, mine, s)
        out.append(
            _chart(
                fig,
                out_dir / f"{s}_capacity.png",
                f"{s}: latency vs offered rate",
                s,
                "Open loop: requests arrive at the offered rate whatever the server does; "
                "latency counts from each request's intended start. Solid p99, dashed p50, "
                "median over repeats; X = stalled, hollow = invalid (the load side set the "
                "numbers). " + capacity_caption(mine),
            )
        )
    return out


def cpu_chart(judgement: Judgement, out_dir: Path) -> list[Chart]:
    """Server CPU per request by style, per scenario at its verdict's load, if recorded."""
    agg = judgement.counted
    shown = [v for v in judgement.verdicts if v.users is not None]
    if "cpu_ms_per_req" not in agg or not shown or agg["cpu_ms_per_req"].isna().all():
        return []
    fig, ax = plt.subplots(figsize=(max(8.0, 1.4 * len(shown) + 2), 5), layout="constrained")
    plots.plot_cpu_per_request(ax, agg, shown)
    return [
        _chart(
            fig,
            out_dir / "cpu_per_request.png",
            "Server CPU per request by style",
            "",
            "Server CPU ms per completed request at each verdict's load (median, whiskers = "
            "repeat interval); lower is cheaper. Scenarios judged by CPU per request count "
            "cells where only the load generator saturated.",
        )
    ]


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
        _chart(
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
            _chart(
                fig, out_dir / f"{scenario}_{suffix}.png", f"{scenario}: {title}", scenario, caption
            )
        )
    return out


def timeline_cell(run: Run, scenario: str = TIMELINE_SCENARIO) -> pd.Series | None:
    """The `sync` cell at the highest valid load of `scenario`, the first repeat with metrics."""
    rows = at_reference_tokens(usable(run.summary))
    rows = rows[(rows["scenario"] == scenario) & (rows["style"] == SWEPT)]
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
        _chart(
            fig,
            out_dir / f"{TIMELINE_SCENARIO}_threadpool.png",
            title,
            TIMELINE_SCENARIO,
            "anyio's tokens in use and the tasks queued for one, scraped once a second: flat at "
            "the limit with a queue behind it means `def` ran out of threads.",
        )
    ]


def sweep_charts(run: Run, out_dir: Path) -> list[Chart]:
    """Throughput and p99 vs threadpool tokens for each swept scenario."""
    out: list[Chart] = []
    names = sweep_scenarios(run.summary)
    if not names:
        return out
    sweep = aggregate_sweep(run.summary)
    for s in names:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
        plots_mechanism.plot_sweep(left, sweep, s, "rps")
        plots_mechanism.plot_sweep(right, sweep, s, "p99_ms")
        out.append(
            _chart(
                fig,
                out_dir / f"{s}_threadpool_sweep.png",
                f"{s}: `def` vs threadpool tokens",
                s,
                "`def` (blue) at each token count, median over repeats; the horizontal lines "
                "are the fastest `async def` at the same users, in its style's colour. The "
                "dash-dot line is anyio's default.",
            )
        )
    return out


def stall_charts(run: Run, out_dir: Path) -> list[Chart]:
    """Per scenario with fix arms: throughput of the default, each fix and `async def`, one
    panel per load, stalled cells hatched."""
    out: list[Chart] = []
    names = stall_scenarios(run.summary)
    if not names:
        return out
    table = stall_table(run.summary, names)
    for s in names:
        part = table[table["scenario"] == s]
        levels = sorted(int(u) for u in part["users"].unique())
        rows = part[["arm", "style"]].drop_duplicates()
        fig, axes = plt.subplots(
            1,
            len(levels),
            figsize=(4.5 * len(levels) + 3, 1.2 + 0.45 * len(rows)),
            sharey=True,
            layout="constrained",
            squeeze=False,
        )
        for i, (ax, users) in enumerate(zip(axes[0], levels, strict=True)):
            plot_stall_rps(ax, table, s, users, legend=i == len(levels) - 1)
        fig.suptitle(f"{s}: throughput of `def`, each fix and `async def`, by load")
        out.append(
            _chart(
                fig,
                out_dir / f"{s}_stalls.png",
                f"{s}: throughput by fix and load",
                s,
                "Median successful requests/s over the repeats (whiskers: min-max), one panel "
                "per load, in each style's colour; hatched bars stalled (xx: a deadlock, no "
                f"completion for the stall threshold; //: a gap of {contract.GAP_NOTE_S:g} s or "
                "more without a completion), their throughput is what completed around it.",
            )
        )
    return out


CLIENTS_CHART = "clients.png"


def client_charts(run: Run, out_dir: Path) -> list[Chart]:
    """Throughput (top) and server CPU per request (bottom) per style x client, one column of
    panels per scenario with two clients for a style."""
    names = client_scenarios(run.summary)
    if not names:
        return []
    table = client_table(run.summary, names)
    rows = int(table.groupby("scenario").size().max())
    fig, axes = plt.subplots(
        2,
        len(names),
        figsize=(5.5 * len(names) + 1.5, 2 * (1.2 + 0.4 * rows)),
        layout="constrained",
        squeeze=False,
    )
    for i, s in enumerate(names):
        plot_clients(axes[0][i], table, s, "rps")
        plot_clients(axes[1][i], table, s, "cpu_ms_per_req")
    fig.suptitle("Which HTTP client: throughput and server CPU per request, by style x client")
    return [
        _chart(
            fig,
            out_dir / CLIENTS_CHART,
            "Which HTTP client: throughput and CPU per request",
            "",
            "Median over the counted repeats (whiskers: min-max), in each style's colour; top "
            "successful requests/s (longer is faster), bottom server CPU ms per request (shorter "
            "is cheaper). `def` on chat_stream ran with the stream fix.",
        )
    ]


def database_charts(run: Run, out_dir: Path) -> list[Chart]:
    """Per DB scenario run on PostgreSQL: throughput per database x driver x pool x style."""
    if not has_postgres(run.summary):
        return []
    names = db_scenarios(run.summary)
    table = database_table(run.summary, names)
    out: list[Chart] = []
    for s in names:
        part = table[table["scenario"] == s]
        if part.empty:
            continue
        fig, ax = plt.subplots(figsize=(max(8.0, 0.75 * len(part) + 4.5), 5), layout="constrained")
        plot_databases(ax, table, s)
        out.append(
            _chart(
                fig,
                out_dir / f"{s}_databases.png",
                f"{s}: throughput by database, driver and pool",
                s,
                "Mean successful requests/s over the counted repeats (whiskers: min-max), one bar "
                "per configuration in its style's colour, grouped by database and pool (size + "
                "overflow); hatched: some repeats not counted; X: no counted repeat (stalled, "
                "invalid or not steady), so no speed.",
            )
        )
    return out
