"""The stalls chart: throughput of the default `def` app, each fix and `async def`, at one load.

Like analysis.plot.plots, the function draws on a given `ax` and returns it (no figures, no I/O).
"""

import math

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

import contract
from analysis.fmt import plain
from analysis.judge.stalls import DEADLOCK, FAILED, NO, STALL, cells_of, row_labels
from analysis.judge.transform import require_columns
from analysis.plot.styles import colour
from analysis.vocabulary import label, ordered

# How a bar shows its cell's outcome: a deadlock hatched densely, a shorter stall lightly.
HATCHES: dict[str, str] = {DEADLOCK: "xx", STALL: "//", NO: ""}


def plot_stall_rps(
    ax: Axes, table: pd.DataFrame, scenario: str, users: int, legend: bool = True
) -> Axes:
    """Median throughput per row (default, fixes, references) at `users`: horizontal bars in
    their style's colour, the repeats' min-max as whiskers, stalled cells hatched and named."""
    require_columns(
        table, ["scenario", "arm", "style", "users", "rps", "outcome_kind", "outcome"], "stalls"
    )
    rows = row_labels(table, scenario)
    names = [plain(r.label) for r in rows]
    top = float(table.loc[table["scenario"] == scenario, "rps_hi"].max())
    top = top if not math.isnan(top) and top > 0 else 1.0
    for i, row in enumerate(rows):
        cells = cells_of(table, row)
        if users not in cells.index:
            ax.text(0, i, " not run", va="center", fontsize="small", color="0.4")
            continue
        cell = cells.loc[users]
        kind = str(cell["outcome_kind"])
        rps = float(cell["rps"]) if not pd.isna(cell["rps"]) else 0.0
        c = colour(row.style)
        hatch = HATCHES.get(kind, "")
        ax.barh(
            i,
            rps,
            color="white" if hatch else c,
            edgecolor=c,
            hatch=hatch,
            linewidth=1.5,
        )
        lo, hi = cell.get("rps_lo"), cell.get("rps_hi")
        if int(cell.get("repeats", 1)) > 1 and not (pd.isna(lo) or pd.isna(hi)):
            ax.errorbar(rps, i, xerr=[[rps - lo], [hi - rps]], fmt="none", ecolor="0.2", lw=1)
        if kind != NO:
            note = FAILED if kind == FAILED else str(cell["outcome"])
            ax.text(rps + top * 0.01, i, note, va="center", fontsize="small", color="0.15")
    ax.set_yticks(range(len(rows)), names)
    # The default on top, as in the report's table (set, not toggled: panels may share y).
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("throughput (successful requests/s)")
    ax.set_title(f"{scenario} at {users} users")
    ax.grid(True, axis="x", alpha=0.3)
    styles = ordered({r.style for r in rows})
    handles = [Patch(facecolor=colour(s), edgecolor=colour(s), label=label(s)) for s in styles]
    stall_name = f"stall (gap ≥ {contract.GAP_NOTE_S:g} s)"
    handles += [
        Patch(facecolor="white", edgecolor="0.3", hatch=HATCHES[DEADLOCK], label="deadlock"),
        Patch(facecolor="white", edgecolor="0.3", hatch=HATCHES[STALL], label=stall_name),
    ]
    if legend:
        # Beside the panel: the bars run the panel's whole width.
        ax.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax
