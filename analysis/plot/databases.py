"""The SQLite vs PostgreSQL chart: throughput per configuration of one scenario, grouped by
database and pool.

Like analysis.plot.plots, the function draws on a given `ax` and returns it (no figures, no I/O).
"""

import math

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from analysis.judge.databases import DATABASE_NAMES
from analysis.judge.transform import require_columns
from analysis.plot.styles import colour
from analysis.vocabulary import label, ordered

# A bar with some repeats not counted (stalled, invalid, not steady) is hatched; a
# configuration with none counted has no bar, only an X at zero and what happened.
PARTIAL_HATCH = "//"
GAP = 0.8
NEEDED = ("scenario", "database", "pool", "variant", "driver", "counted", "repeats")


def group_name(row: pd.Series) -> str:
    """`PostgreSQL, pool 5+10`."""
    return f"{DATABASE_NAMES.get(str(row['database']), str(row['database']))}, pool {row['pool']}"


def plot_databases(ax: Axes, table: pd.DataFrame, scenario: str) -> Axes:
    """Vertical bars, one per configuration of `scenario` (table order), grouped by database and
    pool, in the style's colour, the driver under each bar; whiskers the min-max over the
    counted repeats. No counted repeat: an X at zero and the reason, never a bar."""
    require_columns(table, [*NEEDED, "rps", "rps_lo", "rps_hi", "stall_text", "flags"], "db")
    part = table[table["scenario"] == scenario].reset_index(drop=True)
    top = float(part["rps_hi"].max()) if len(part) else math.nan
    top = top if not math.isnan(top) and top > 0 else 1.0
    x, groups, prev = 0.0, [], None
    xs: list[float] = []
    for _, row in part.iterrows():
        name = group_name(row)
        if prev is not None and name != prev:
            x += GAP
            ax.axvline(x - (1 + GAP) / 2, color="0.7", lw=0.8, ls=":")
        if name != prev:
            groups.append((name, []))
        groups[-1][1].append(x)
        xs.append(x)
        prev = name
        x += 1
    for xi, (_, row) in zip(xs, part.iterrows(), strict=True):
        c = colour(str(row["style"]))
        value = float(row["rps"])
        if math.isnan(value):
            why = str(row["stall_text"]) if row["stall_text"] != "no" else str(row["flags"])
            ax.plot([xi], [0], marker="x", ms=10, mew=2, color=c, clip_on=False)
            ax.text(
                xi,
                top * 0.03,
                f"no speed:\n{why}",
                ha="center",
                va="bottom",
                rotation=90,
                fontsize="x-small",
                color="0.2",
            )
            continue
        partial = int(row["counted"]) < int(row["repeats"])
        ax.bar(
            xi,
            value,
            width=0.8,
            color="white" if partial else c,
            edgecolor=c,
            hatch=PARTIAL_HATCH if partial else "",
            linewidth=1.5,
        )
        low, high = float(row["rps_lo"]), float(row["rps_hi"])
        if int(row["counted"]) > 1 and not (math.isnan(low) or math.isnan(high)):
            ax.errorbar(xi, value, yerr=[[value - low], [high - value]], fmt="none", ecolor="0.2")
    ax.set_xticks(xs, [str(d) for d in part["driver"]], fontsize="small")
    where = blended_transform_factory(ax.transData, ax.transAxes)
    for name, at in groups:
        ax.text(
            sum(at) / len(at),
            0.98,
            name,
            transform=where,
            ha="center",
            va="top",
            fontsize="small",
            fontweight="bold",
        )
    ax.set_xlim(-0.6, (xs[-1] if xs else 0) + 0.6)
    ax.set_ylim(0, top * 1.25)
    ax.set_xlabel("driver (grouped by database and pool size + overflow)")
    ax.set_ylabel("throughput (successful requests/s)")
    users = f" at {int(part['users'].iloc[0])} users" if len(part) else ""
    ax.set_title(f"{scenario}{users}: throughput by database, driver and pool")
    ax.grid(True, axis="y", alpha=0.3)
    handles: list[Patch | Line2D] = [
        Patch(facecolor=colour(s), edgecolor=colour(s), label=label(s))
        for s in ordered(set(part["style"]))
    ]
    handles += [
        Patch(
            facecolor="white",
            edgecolor="0.3",
            hatch=PARTIAL_HATCH,
            label="some repeats not counted",
        ),
        Line2D([], [], marker="x", ls="", color="0.3", label="no counted repeat (no speed)"),
    ]
    ax.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax
