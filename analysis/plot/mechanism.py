"""Plots of the mechanism behind a result: loop lag, threadpool, overhead, CPU, token sweep.

Like analysis.plot.plots, each function draws on a given `ax` and returns it (no figures, no I/O).
"""

from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from analysis.judge.sweep import reference_row
from analysis.judge.transform import DEFAULT_TOKENS, require_columns
from analysis.judge.why import CPU_BOUND_PCT, LOOP_BLOCKED_MS
from analysis.load.run import metric_series
from analysis.plot.plots import (
    line_weight,
    plain_log,
    plot_percentiles,
    scenario_rows,
    users_axis,
)
from analysis.plot.styles import colour
from analysis.vocabulary import THREADED, label, ordered

TOKENS_IN_USE = "lab_threadpool_tokens_in_use"
TOKENS_WAITING = "lab_threadpool_waiting"
TOKENS_TOTAL = "lab_threadpool_tokens_total"
LAG_STYLES: dict[str, str] = {"max": "-", "p99": "--"}
# One line style per user level in the sweep chart, lowest load first.
USERS_STYLES: tuple[str, ...] = ("-", "--", ":", "-.")


def plot_loop_lag(ax: Axes, agg: pd.DataFrame, scenario: str) -> Axes:
    """Max (solid, min-max band) and p99 (dashed) event-loop lag vs users per style, log y."""
    cols = ["loop_lag_max_ms", "loop_lag_max_ms_lo", "loop_lag_max_ms_hi", "loop_lag_p99_ms"]
    rows = scenario_rows(agg, scenario, cols)
    rows = rows[rows["loop_lag_max_ms"].notna()]
    for i, style in enumerate(ordered(rows["style"])):
        part = rows[rows["style"] == style]
        c = colour(style)
        ax.plot(part["users"], part["loop_lag_max_ms"], "-", marker="o", color=c, **line_weight(i))
        ax.fill_between(
            part["users"],
            part["loop_lag_max_ms_lo"],
            part["loop_lag_max_ms_hi"],
            color=c,
            alpha=0.2,
            lw=0,
        )
        ax.plot(part["users"], part["loop_lag_p99_ms"], "--", marker=".", color=c)
    ax.axhline(LOOP_BLOCKED_MS, color="0.4", lw=1, ls="-.")
    if rows[cols[0]].gt(0).all() and rows["loop_lag_p99_ms"].dropna().gt(0).all():
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    users_axis(ax, rows["users"].unique())
    ax.set_ylabel("event-loop lag (ms, log scale)")
    ax.set_title(f"{scenario}: event-loop lag vs users (server's /metrics)")
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=colour(s), label=label(s)) for s in ordered(rows["style"])]
    handles += [
        Line2D([], [], color="0.3", ls=ls, label=f"lag {k}") for k, ls in LAG_STYLES.items()
    ]
    handles.append(
        Line2D([], [], color="0.4", ls="-.", label=f"loop blocked: {LOOP_BLOCKED_MS:g} ms")
    )
    ax.legend(handles=handles, fontsize="small")
    return ax


def plot_overhead(ax: Axes, agg: pd.DataFrame, scenario: str) -> Axes:
    """Proxy overhead (time in the app minus upstream/DB wait) p50 and p99 vs users per style."""
    plot_percentiles(ax, agg, scenario, prefix="overhead_", what="overhead (app - upstream/DB)")
    return ax


def plot_server_cpu(ax: Axes, agg: pd.DataFrame, scenario: str) -> Axes:
    """Server CPU (% of one core) vs users per style; the 100% line is one core."""
    cols = ["server_cpu_pct", "server_cpu_pct_lo", "server_cpu_pct_hi"]
    rows = scenario_rows(agg, scenario, cols)
    rows = rows[rows["server_cpu_pct"].notna()]
    for i, style in enumerate(ordered(rows["style"])):
        part = rows[rows["style"] == style]
        c = colour(style)
        ax.plot(
            part["users"],
            part["server_cpu_pct"],
            marker="o",
            color=c,
            label=label(style),
            **line_weight(i),
        )
        ax.fill_between(part["users"], part[cols[1]], part[cols[2]], color=c, alpha=0.2, lw=0)
    ax.axhline(100, color="black", lw=1, label="100% = one core")
    ax.axhline(CPU_BOUND_PCT, color="0.5", lw=1, ls=":", label=f"CPU-bound: {CPU_BOUND_PCT:g}%")
    top = max(120.0, float(rows["server_cpu_pct_hi"].max(skipna=True) or 0) * 1.1)
    ax.set_ylim(0, top)
    users_axis(ax, rows["users"].unique())
    ax.set_ylabel("server CPU (% of one core)")
    ax.set_title(f"{scenario}: server CPU vs users")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return ax


def plot_threadpool(
    ax: Axes,
    metrics: pd.DataFrame,
    title: str,
    window: tuple[float, float] | None = None,
) -> Axes:
    """Threadpool tokens in use and tasks waiting over one cell's time, with the token limit."""
    require_columns(metrics, ["ts", "metric", "labels", "value"], "metrics")
    in_use = metric_series(metrics, TOKENS_IN_USE)
    waiting = metric_series(metrics, TOKENS_WAITING)
    total = metric_series(metrics, TOKENS_TOTAL)
    stamps = [s.index.min() for s in (in_use, waiting, total) if not s.empty]
    t0 = window[0] if window is not None else min(stamps, default=0.0)
    c = colour(THREADED)
    # Gauges hold the peak of the second before the scrape: a step ending at the scrape.
    ax.step(in_use.index - t0, in_use.to_numpy(), where="pre", color=c, lw=2, label="tokens in use")
    ax.step(
        waiting.index - t0,
        waiting.to_numpy(),
        where="pre",
        color=c,
        lw=1.5,
        ls="--",
        label="tasks waiting for a token",
    )
    if not waiting.empty:
        ax.fill_between(waiting.index - t0, waiting.to_numpy(), step="pre", color=c, alpha=0.15)
    if not total.empty:
        ax.step(
            total.index - t0,
            total.to_numpy(),
            where="pre",
            color="black",
            lw=1,
            ls="-.",
            label=f"token limit ({total.iloc[-1]:g})",
        )
    if window is not None:
        ax.axvspan(0, window[1] - window[0], color="0.9", zorder=0, label="measured window")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since the measured window opened" if window else "seconds")
    ax.set_ylabel("tasks (peak of each second)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return ax


def plot_sweep(ax: Axes, sweep: pd.DataFrame, scenario: str, metric: str = "rps") -> Axes:
    """`sync` throughput or p99 vs threadpool tokens (log x); `async` at equal users as a line."""
    require_columns(sweep, ["scenario", "style", "users", "threadpool_tokens", metric], "sweep")
    rows = sweep[(sweep["scenario"] == scenario) & (sweep["style"] == THREADED)]
    users = sorted(int(u) for u in rows["users"].unique())
    tokens: set[int] = set()
    for i, n in enumerate(users):
        part = rows[rows["users"] == n].sort_values("threadpool_tokens")
        ls = USERS_STYLES[i % len(USERS_STYLES)]
        ax.plot(
            part["threadpool_tokens"],
            part[metric],
            ls,
            marker="o",
            color=colour(THREADED),
            label=f"{label(THREADED)}, {n} users",
        )
        if {f"{metric}_lo", f"{metric}_hi"} <= set(part.columns):
            ax.fill_between(
                part["threadpool_tokens"],
                part[f"{metric}_lo"],
                part[f"{metric}_hi"],
                color=colour(THREADED),
                alpha=0.15,
                lw=0,
            )
        tokens |= {int(t) for t in part["threadpool_tokens"]}
        ref = reference_row(sweep, scenario, n)
        if ref is not None:
            ax.axhline(
                float(ref[metric]),
                color=colour(str(ref["style"])),
                ls=ls,
                lw=1.5,
                label=f"{label(str(ref['style']))}, {n} users",
            )
    ax.axvline(DEFAULT_TOKENS, color="0.5", lw=1, ls="-.", label=f"anyio default: {DEFAULT_TOKENS}")
    _tokens_axis(ax, sorted(tokens | {DEFAULT_TOKENS}))
    what = "throughput (successful requests/s)" if metric == "rps" else "p99 latency (ms, log)"
    if metric == "rps":
        ax.set_ylim(bottom=0)
    elif rows[metric].gt(0).all():
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    ax.set_ylabel(what)
    ax.set_title(f"{scenario}: `def` {what.split(' (')[0]} vs threadpool tokens")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def _tokens_axis(ax: Axes, tokens: Sequence[int]) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(tokens))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("anyio threadpool tokens (log scale)")
