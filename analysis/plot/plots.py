"""Plot functions: each draws on a given matplotlib `ax` and returns it (no figures, no I/O)."""

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullLocator,
    ScalarFormatter,
)

from analysis.judge.transform import at_users, require_columns
from analysis.judge.verdict import Verdict
from analysis.plot.styles import colour
from analysis.vocabulary import BASELINE, label, ordered

USERS_LABEL = "concurrent users (closed loop, no think time)"
PCT_STYLES: dict[str, str] = {"p50": "--", "p99": "-"}


def users_axis(ax: Axes, users: Sequence[int]) -> None:
    """Users on x: the measured levels as ticks, log-spaced when they span a decade."""
    # Log spacing once levels span a decade (10, 50, 200), with the measured levels as ticks.
    values = sorted({int(u) for u in users})
    if values and values[-1] / max(values[0], 1) >= 8:
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel(USERS_LABEL)


def line_weight(i: int) -> dict[str, float]:
    """Line width and marker size of the i-th style drawn."""
    # Later styles draw thinner, so identical results (async and blocking on /hello) stay visible.
    return {"linewidth": max(3.2 - 0.6 * i, 1.0), "markersize": max(9.0 - 1.5 * i, 4.0)}


def plain_log(axis: Axis) -> None:
    """Plain-number tick labels on a log axis."""
    # "200" reads faster than "2 x 10^2"; minor ticks get labels only when no decade tick shows.
    lo, hi = sorted(axis.get_view_interval())
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    few_decades = lo > 0 and hi / lo < 10
    axis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}" if few_decades else ""))


def scenario_rows(agg: pd.DataFrame, scenario: str, columns: Sequence[str]) -> pd.DataFrame:
    """One scenario's aggregated rows by users; MissingColumnError if `columns` are absent."""
    require_columns(agg, ["scenario", "style", "users", *columns], "aggregate")
    return agg[agg["scenario"] == scenario].sort_values("users")


def plot_throughput(
    ax: Axes,
    agg: pd.DataFrame,
    scenario: str,
    excluded_rows: pd.DataFrame | None = None,
) -> Axes:
    """Median throughput vs users per style, the min-max band, Little's-law ideal and pool size."""
    rows = scenario_rows(agg, scenario, ["rps", "rps_lo", "rps_hi"])
    for i, style in enumerate(ordered(rows["style"])):
        part = rows[rows["style"] == style]
        c = colour(style)
        ax.plot(
            part["users"], part["rps"], marker="o", color=c, label=label(style), **line_weight(i)
        )
        ax.fill_between(part["users"], part["rps_lo"], part["rps_hi"], color=c, alpha=0.2, lw=0)
    users = sorted(rows["users"].unique())
    latency = first_value(rows, "upstream_latency_ms")
    if latency is not None and latency > 0 and users:
        # Little's law: with no think time, N users each waiting L seconds make at most N / L req/s.
        xs = np.array(users, dtype=float)
        ax.plot(
            xs, xs / (latency / 1000), ":", color="0.35", label=f"ideal: users / {latency:g} ms"
        )
    tokens = first_value(rows, "threadpool_tokens")
    if tokens is not None and tokens > 0:
        ax.axvline(tokens, color="0.5", lw=1, ls="-.", label=f"threadpool tokens = {tokens:g}")
        users = sorted({*users, int(tokens)})
        if latency is not None and latency > 0 and BASELINE in set(rows["style"]):
            # `def` cannot have more requests in flight than threadpool tokens.
            ax.axhline(
                tokens / (latency / 1000),
                color=colour(BASELINE),
                lw=1,
                ls=(0, (1, 3)),
                label=f"def ceiling: {tokens:g} tokens / {latency:g} ms",
            )
    if excluded_rows is not None and not excluded_rows.empty:
        bad = excluded_rows[(excluded_rows["scenario"] == scenario) & excluded_rows["rps"].notna()]
        for style in ordered(bad["style"]):
            part = bad[bad["style"] == style]
            ax.scatter(
                part["users"],
                part["rps"],
                marker="X",
                s=60,
                color=colour(style),
                zorder=3,
                edgecolors="black",
                linewidths=0.5,
            )
        if not bad.empty:
            ax.scatter([], [], marker="X", color="0.6", edgecolors="black", label="excluded cell")
    users_axis(ax, users)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("throughput (successful requests/s)")
    ax.set_title(f"{scenario}: throughput vs users (median, band = min-max over repeats)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def plot_percentiles(
    ax: Axes,
    agg: pd.DataFrame,
    scenario: str,
    prefix: str = "",
    what: str = "request latency",
) -> Axes:
    """p50 (dashed) and p99 (solid, min-max band) of `<prefix>p50_ms`/`<prefix>p99_ms` vs users."""
    p50, p99 = f"{prefix}p50_ms", f"{prefix}p99_ms"
    # A percentile the sample rule left empty (in any repeat) is not drawn either.
    rows = scenario_rows(agg, scenario, [p50, p99, f"{p99}_lo", f"{p99}_hi"])
    rows = rows[rows[p99].notna() | rows[p50].notna()]
    for i, style in enumerate(ordered(rows["style"])):
        part = rows[rows["style"] == style]
        c = colour(style)
        ax.plot(part["users"], part[p99], PCT_STYLES["p99"], marker="o", color=c, **line_weight(i))
        ax.fill_between(part["users"], part[f"{p99}_lo"], part[f"{p99}_hi"], color=c, alpha=0.2)
        ax.plot(part["users"], part[p50], PCT_STYLES["p50"], marker=".", color=c)
    if rows[[p50, p99]].gt(0).any().any():
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    users_axis(ax, rows["users"].unique())
    ax.set_ylabel(f"{what} (ms, log scale)")
    ax.set_title(f"{scenario}: {what} p50 / p99 vs users")
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=colour(s), label=label(s)) for s in ordered(rows["style"])]
    handles += [Line2D([], [], color="0.3", ls=ls, label=p) for p, ls in PCT_STYLES.items()]
    ax.legend(handles=handles, fontsize="small")
    return ax


def plot_cdf(
    ax: Axes, samples: Mapping[str, np.ndarray], scenario: str, users: int, what: str = "request"
) -> Axes:
    """Empirical CDF of raw latencies per style at one load, log x, p50/p99 guides."""
    for style in ordered(samples):
        values = np.sort(np.asarray(samples[style], dtype=float))
        if values.size == 0:
            continue
        # Quantiles, not every point: a million-row cell plots as fast as a tiny one.
        q = np.linspace(0, 1, min(values.size, 2000))
        ax.plot(
            np.quantile(values, q),
            q,
            color=colour(style),
            label=f"{label(style)} (n={values.size:,})",
        )
    for q in (0.5, 0.99):
        ax.axhline(q, color="0.6", lw=0.8, ls=":")
        ax.annotate(
            f"p{q * 100:g}",
            (0, q),
            xycoords=("axes fraction", "data"),
            fontsize="small",
            xytext=(3, -10),
            textcoords="offset points",
            color="0.4",
        )
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(f"{what} latency (ms, log scale)")
    ax.set_ylabel("fraction of requests at or below")
    ax.set_title(
        f"{scenario}: {what} latency distribution at {users} users (successful, pooled repeats)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return ax


def plot_advantage(ax: Axes, verdicts: Sequence[Verdict], which: str = "lead") -> Axes:
    """Per scenario, the leader's advantage over the runner-up (x, log), its noise band shaded.

    `lead`: the verdict metric (throughput leader / runner-up, or CPU per request runner-up /
    leader where a scenario is judged by cost); `tail`: the runner-up's tail latency / leader's.
    """
    shown = [v for v in verdicts if v.leader is not None]
    pick = {"lead": "ratio", "tail": "tail_ratio"}[which]
    names = [
        f"{v.scenario} ({v.users} users{', CPU/req' if v.lower_is_better else ''})"
        if which == "lead"
        else f"{v.scenario} ({v.users} users, {v.tail})"
        for v in shown
    ]
    finite: list[float] = []
    for i, v in enumerate(shown):
        ax.fill_betweenx(
            [i - 0.45, i + 0.45],
            1,
            1 + v.threshold,
            color="0.85",
            zorder=0,
            label="noise threshold (per scenario)" if i == 0 else None,
        )
        ratio = getattr(v, pick)
        if ratio is None or not all(math.isfinite(x) and x > 0 for x in ratio):
            ax.annotate("n/a", (1, i), ha="center", va="center", fontsize="small")
            continue
        mid, lo, hi = ratio
        finite += [mid, lo, hi]
        ax.barh(
            i,
            mid - 1,
            left=1,
            color=colour(str(v.leader)),
            alpha=1.0 if v.clear else 0.35,
            hatch=None if v.clear else "//",
            edgecolor="black",
            linewidth=0.5,
        )
        ax.errorbar(mid, i, xerr=[[mid - lo], [hi - mid]], color="black", capsize=3, lw=1)
        who = " = ".join(v.winners) if v.clear else "no clear winner"
        ax.annotate(
            f"x{mid:.2f} {who}",
            (max(mid, hi), i),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.axvline(1, color="black", lw=0.8)
    ax.set_xscale("log")
    top = max([*finite, 1.0 + max((v.threshold for v in shown), default=0.0)])
    # Room on the right for the labels, and 1 always in view as the parity line.
    ax.set_xlim(min([*finite, 1.0]) / 1.3, top * 3)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"x{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.set_yticks(range(len(shown)), names)
    ax.invert_yaxis()
    if which == "lead":
        ax.set_xlabel("leader's advantage (x, log scale; > 1 favours the leader)")
        ax.set_title("Lead in the verdict metric (throughput, or CPU/req)")
    else:
        ax.set_xlabel("runner-up / leader (x, log scale; > 1 favours the leader)")
        ax.set_title("Tail latency (highest percentile n supports)")
    ax.set_ylabel("scenario (users at the verdict's load)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return ax


def plot_cpu_per_request(ax: Axes, agg: pd.DataFrame, verdicts: Sequence[Verdict]) -> Axes:
    """Server CPU ms per completed request by style, per scenario at its verdict's load (log y).

    Bars are medians over the counted repeats, whiskers their min-max; lower is cheaper.
    """
    require_columns(agg, ["scenario", "style", "users", "cpu_ms_per_req"], "aggregate")
    shown = [v for v in verdicts if v.users is not None]
    styles = ordered(
        s
        for v in shown
        for s in at_users(agg, v.scenario, int(v.users or 0))["cpu_ms_per_req"].dropna().index
    )
    width = 0.8 / max(len(styles), 1)
    drawn = set()
    for i, v in enumerate(shown):
        rows = at_users(agg, v.scenario, int(v.users or 0))
        for j, style in enumerate(styles):
            if style not in rows.index or pd.isna(rows.loc[style, "cpu_ms_per_req"]):
                continue
            mid = float(rows.loc[style, "cpu_ms_per_req"])
            lo = float(rows.loc[style].get("cpu_ms_per_req_lo", mid))
            hi = float(rows.loc[style].get("cpu_ms_per_req_hi", mid))
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, mid, width=width * 0.9, color=colour(style), edgecolor="black", lw=0.4)
            ax.errorbar(x, mid, yerr=[[mid - lo], [hi - mid]], color="black", capsize=2, lw=0.8)
            drawn.add(style)
    ax.set_xticks(range(len(shown)), [f"{v.scenario}\n({v.users} users)" for v in shown])
    values = agg["cpu_ms_per_req"].dropna() if "cpu_ms_per_req" in agg else pd.Series()
    if (values > 0).any():
        ax.set_yscale("log")
        # 1-2-5 ticks: the bars span one or two decades, too few for decade ticks alone.
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.set_xlabel("scenario (users at the verdict's load)")
    ax.set_ylabel("server CPU per completed request (ms, log scale)")
    ax.set_title("Server CPU per request by style at each verdict's load (lower is cheaper)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    if drawn:
        handles = [Patch(color=colour(s), label=label(s)) for s in styles if s in drawn]
        ax.legend(handles=handles, fontsize="small")
    return ax


def first_value(rows: pd.DataFrame, column: str) -> float | None:
    """The first non-missing value of a column, or None."""
    if column not in rows:
        return None
    values = rows[column].dropna()
    return float(values.iloc[0]) if not values.empty else None
