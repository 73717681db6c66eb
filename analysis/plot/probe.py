"""The probe's own picture: what held the event loop, per call, in each cell of one route.

The probe's other charts are the lab's own (throughput, loop lag, the threadpool timeline, the
hockey stick: analysis.plot), drawn from the route's cells; this one has no closed-loop
equivalent: the loop sampler's holds (analysis.load.probe), one box per cell, in the colour of
the style the cell ran the route in.
"""

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from analysis.load.probe import ProbeCell
from analysis.plot.plots import plain_log
from analysis.plot.styles import colour


def plot_holds(
    ax: Axes, cells: Sequence[tuple[str, str, ProbeCell]], threshold_ms: float, title: str
) -> Axes:
    """Time each call of the app's code held the loop (log y), one box per (label, style, cell);
    the sampler's threshold as a line. A cell with no hold shows an empty slot."""
    data, labels, colours = [], [], []
    for text, style, cell in cells:
        held = [v for h in cell.user_held() for v in h.held_ms]
        data.append(held or [float("nan")])
        labels.append(f"{text}\n({len(held)} calls)")
        colours.append(colour(style))
    boxes = ax.boxplot(data, patch_artist=True, widths=0.6, showfliers=True)
    for patch, c in zip(boxes["boxes"], colours, strict=True):
        patch.set_facecolor(c)
        patch.set_alpha(0.6)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize="small")
    ax.axhline(threshold_ms, color="0.4", lw=1, ls="-.")
    values = [v for d in data for v in d if v == v and v > 0]
    if values:
        ax.set_yscale("log")
        ax.set_ylim(threshold_ms * 0.7, max(values) * 1.5)
        plain_log(ax.yaxis)
    ax.set_ylabel("time one call held the event loop (ms, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(
        handles=[Line2D([], [], color="0.4", ls="-.", label=f"threshold {threshold_ms:g} ms")],
        fontsize="small",
        loc="upper right",
    )
    return ax
