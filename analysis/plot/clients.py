"""The client comparison chart: throughput or CPU per request per style x client, one scenario.

Like analysis.plot.plots, the function draws on a given `ax` and returns it (no figures, no I/O).
"""

import math

import pandas as pd
from matplotlib.axes import Axes

from analysis.judge.transform import require_columns
from analysis.plot.styles import colour

# metric -> (median, min, max) columns of analysis.judge.clients.client_table, and the axis.
METRICS: dict[str, tuple[str, str, str, str]] = {
    "rps": ("rps", "rps_lo", "rps_hi", "throughput (successful requests/s)"),
    "cpu_ms_per_req": ("cpu_ms_per_req", "cpu_lo", "cpu_hi", "server CPU per request (ms)"),
}


def plot_clients(ax: Axes, table: pd.DataFrame, scenario: str, metric: str = "rps") -> Axes:
    """Horizontal bars, one per style x client of `scenario` (table order, `def` + httpx on
    top), in the style's colour; whiskers the min-max over the counted repeats."""
    mid, lo, hi, axis = METRICS[metric]
    require_columns(table, ["scenario", "label", "style", "counted", mid, lo, hi], "clients")
    part = table[table["scenario"] == scenario].reset_index(drop=True)
    top = float(part[hi].max()) if len(part) else math.nan
    top = top if not math.isnan(top) and top > 0 else 1.0
    for i, row in part.iterrows():
        value = float(row[mid])
        if math.isnan(value):
            ax.text(0, i, " no counted repeat", va="center", fontsize="small", color="0.4")
            continue
        c = colour(str(row["style"]))
        ax.barh(i, value, color=c, edgecolor=c)
        low, high = float(row[lo]), float(row[hi])
        if int(row["counted"]) > 1 and not (math.isnan(low) or math.isnan(high)):
            ax.errorbar(value, i, xerr=[[value - low], [high - value]], fmt="none", ecolor="0.2")
    ax.set_yticks(range(len(part)), [str(x).replace("`", "") for x in part["label"]])
    ax.set_ylim(len(part) - 0.5, -0.5)
    ax.set_xlim(0, top * 1.1)
    ax.set_xlabel(axis)
    users = f" at {int(part['users'].iloc[0])} users" if "users" in part and len(part) else ""
    what = "throughput" if metric == "rps" else "CPU per request"
    ax.set_title(f"{scenario}{users}: {what}")
    ax.grid(True, axis="x", alpha=0.3)
    return ax
