"""The server comparison chart: each style's throughput on each ASGI server, one scenario.

Like analysis.plot.plots, the function draws on a given `ax` and returns it (no figures, no I/O).
"""

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from analysis.judge.transform import require_columns
from analysis.plot.styles import colour
from analysis.vocabulary import ordered


def plot_servers(ax: Axes, table: pd.DataFrame, scenario: str, servers: list[str]) -> Axes:
    """Grouped vertical bars: one group per server (in `servers`' order), one bar per style in
    its colour, the median over the counted repeats with min-max whiskers; a style that stalled
    with no counted repeat is an X at the axis, labelled `stalled`."""
    require_columns(
        table,
        ["scenario", "server", "users", "style", "label", "rps", "rps_lo", "rps_hi", "stalled"],
        "servers",
    )
    part = table[table["scenario"] == scenario]
    styles = ordered(part["style"].unique())
    width = 0.8 / max(len(styles), 1)
    top = float(part["rps_hi"].max()) if part["rps_hi"].notna().any() else 1.0
    top = top if top > 0 else 1.0
    for j, style in enumerate(styles):
        rows = part[part["style"] == style].set_index("server")
        c = colour(style)
        shown = False
        for i, server in enumerate(servers):
            if server not in rows.index:
                continue
            row = rows.loc[server]
            x = i - 0.4 + width * (j + 0.5)
            value = float(row["rps"])
            if math.isnan(value):
                if int(row["stalled"]):
                    ax.plot(x, 0, marker="x", color=c, markersize=9, mew=2)
                    ax.text(
                        x, top * 0.02, "stalled", rotation=90, ha="center", va="bottom",
                        fontsize="x-small", color=c,
                    )  # fmt: skip
                continue
            ax.bar(x, value, width * 0.9, color=c, label=None if shown else str(row["label"]))
            shown = True
            low, high = float(row["rps_lo"]), float(row["rps_hi"])
            if not (math.isnan(low) or math.isnan(high)) and high > low:
                spread = [[value - low], [high - value]]
                ax.errorbar(x, value, yerr=spread, fmt="none", ecolor="0.2")
        if not shown:
            ax.plot([], [], marker="x", ls="", color=c, label=f"{rows['label'].iloc[0]} (stalled)")
    ax.set_xticks(np.arange(len(servers)), servers, rotation=20, ha="right")
    ax.set_ylim(0, top * 1.15)
    users = sorted({int(u) for u in part["users"]})
    at = f" at {', '.join(map(str, users))} users" if users else ""
    ax.set_title(f"{scenario}{at}")
    ax.set_ylabel("successful requests/s")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper right")
    return ax
