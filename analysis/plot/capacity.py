"""The hockey stick: latency against offered rate (open loop), per style, with the SLO and each
style's capacity. Like analysis.plot.plots, the function draws on a given `ax` and returns it."""

import math
from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from analysis.judge.capacity import StyleCapacity, capacity_text
from analysis.judge.transform import require_columns
from analysis.plot.plots import plain_log
from analysis.plot.styles import colour
from analysis.vocabulary import label, ordered
from contract.slo import Slo

RATE_LABEL = "offered rate (requests/s, open loop, log scale)"
LATENCY_LABEL = "latency from intended start (ms, log scale)"
SLO_COLOUR = "0.25"


def _one_two_five(x: float, _pos: object = None) -> str:
    lead = f"{x:.0e}"[0] if x > 0 else ""
    return f"{x:g}" if lead in ("2", "5") else ""


def series_label(style: str, arm: str) -> str:
    """A style's legend label, with its arm when it has one."""
    return label(style) + (f" [{arm}]" if arm else "")


def _marks(ax: Axes, part: pd.DataFrame, column: str, c: str) -> None:
    # Stalled points an X; invalid ones (the load side set the numbers) hollow; the rest filled.
    shown = part[part[column] > 0]
    stalled = shown[shown["stalled"]]
    hollow = shown[~shown["stalled"] & shown["invalid"]]
    filled = shown[~shown["stalled"] & ~shown["invalid"]]
    ax.plot(filled["offered_rps"], filled[column], "o", color=c, markersize=5, linestyle="none")
    ax.plot(
        hollow["offered_rps"],
        hollow[column],
        "o",
        markerfacecolor="white",
        markeredgecolor=c,
        markersize=6,
        linestyle="none",
    )
    ax.plot(stalled["offered_rps"], stalled[column], "X", color=c, markersize=10, linestyle="none")


def _few_samples(ax: Axes, part: pd.DataFrame, c: str) -> bool:
    """Where the sample rule left a point's p99 empty, its raw value (`p99_ms_raw`, labelled as
    such): a thin dotted line into the p99 curve, hollow squares. Whether any was drawn."""
    if "p99_ms_raw" not in part:
        return False
    few = part["p99_ms"].isna() & (part["p99_ms_raw"] > 0)
    if not few.any():
        return False
    either = part["p99_ms"].where(~few, part["p99_ms_raw"])
    line = part[either > 0]
    ax.plot(line["offered_rps"], either[line.index], color=c, linestyle=":", lw=1)
    ax.plot(
        part.loc[few, "offered_rps"],
        part.loc[few, "p99_ms_raw"],
        "s",
        markerfacecolor="white",
        markeredgecolor=c,
        markersize=4,
        linestyle="none",
    )
    return True


def hockey(
    ax: Axes,
    points: pd.DataFrame,
    slo: Slo | None,
    capacities: Sequence[StyleCapacity] = (),
    scenario: str = "",
) -> Axes:
    """p99 (solid) and p50 (dashed) against offered rate per style in its colour, the SLO as a
    labelled horizontal line and each style's capacity as a dotted vertical line with a diamond
    (a right-pointing triangle when it is only a lower bound). A rate whose repeats had too few
    samples for a p99 (the sample rule) shows its raw p99, thin, dotted and hollow."""
    require_columns(
        points, ["style", "arm", "offered_rps", "p50_ms", "p99_ms", "stalled", "invalid"], "points"
    )
    handles: list[Line2D] = []
    few_samples = False
    pairs = points[["style", "arm"]].drop_duplicates()
    for style in ordered(pairs["style"]):
        for arm in sorted(pairs.loc[pairs["style"] == style, "arm"]):
            part = points[(points["style"] == style) & (points["arm"] == arm)]
            part = part.sort_values("offered_rps")
            c = colour(style)
            dashed = (0, (4, 2)) if not arm else (0, (1, 2))
            for column, line in (("p99_ms", "-" if not arm else "-."), ("p50_ms", dashed)):
                shown = part[part[column] > 0]
                ax.plot(shown["offered_rps"], shown[column], color=c, linestyle=line, lw=2)
                _marks(ax, part, column, c)
            few_samples |= _few_samples(ax, part, c)
            handles.append(Line2D([], [], color=c, lw=2, label=series_label(style, arm)))
    if slo is not None:
        ax.axhline(slo.latency_ms, color=SLO_COLOUR, linestyle=":", lw=1.5)
        ax.annotate(
            f"SLO: p{slo.quantile:g} ≤ {slo.latency_ms:g} ms, errors ≤ {slo.errors_pct:g} %",
            xy=(0.01, slo.latency_ms),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize="small",
            color=SLO_COLOUR,
        )
    for cap in capacities:
        if math.isnan(cap.capacity):
            continue
        c = colour(cap.style)
        ax.axvline(cap.capacity, color=c, linestyle=":", lw=1.2, alpha=0.8)
        y = cap.p99_ms if cap.p99_ms > 0 else (slo.latency_ms if slo else math.nan)
        if not math.isnan(y):
            marker = ">" if cap.lower_bound else "D"
            ax.plot([cap.capacity], [y], marker, color=c, markeredgecolor="black", markersize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log(ax.xaxis)
    plain_log(ax.yaxis)
    # Latency spans decades: label 2 and 5 between them too, so a point's value can be read.
    ax.yaxis.set_minor_formatter(FuncFormatter(_one_two_five))
    ax.set_xlabel(RATE_LABEL)
    ax.set_ylabel(LATENCY_LABEL)
    title = "latency vs offered rate (open loop)"
    ax.set_title(f"{scenario}: {title}" if scenario else title)
    ax.grid(True, which="both", alpha=0.25)
    handles += [
        Line2D([], [], color="0.3", lw=2, label="p99"),
        Line2D([], [], color="0.3", lw=2, linestyle=(0, (4, 2)), label="p50"),
        *(
            [
                Line2D(
                    [],
                    [],
                    color="0.3",
                    lw=1,
                    linestyle=":",
                    marker="s",
                    markerfacecolor="white",
                    markersize=4,
                    label="p99 of too few samples (raw)",
                )
            ]
            if few_samples
            else []
        ),
        Line2D([], [], color="0.3", marker="X", linestyle="none", markersize=9, label="stalled"),
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            markerfacecolor="white",
            linestyle="none",
            label="invalid (load side)",
        ),
    ]
    if capacities:
        handles += [
            Line2D([], [], color="0.3", marker="D", linestyle=":", label="capacity at the SLO"),
            Line2D(
                [], [], color="0.3", marker=">", linestyle=":", label="capacity ≥ (lower bound)"
            ),
        ]
    ax.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def capacity_caption(capacities: Sequence[StyleCapacity]) -> str:
    """The chart's caption: each style's capacity in words."""
    if not capacities:
        return "No SLO capacity search in this run: latency against offered rate only."
    return (
        "Capacity at the SLO: "
        + "; ".join(f"{c.name} {capacity_text(c)}" for c in capacities)
        + "."
    )
