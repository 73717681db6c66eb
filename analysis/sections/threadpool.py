"""The section "Threadpool sweep" (`make bench-threadpool`): how much of `def`'s gap to
`async def` is anyio's default of 40 tokens; per swept scenario a table, the gap in words and a
chart."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table
from analysis.judge.sweep import (
    Gap,
    SweepTable,
    aggregate_sweep,
    gap_text,
    gaps,
    sweep_outcomes,
    sweep_scenarios,
    sweep_table,
)
from analysis.judge.transform import DEFAULT_TOKENS
from analysis.judge.verdict import Verdicts
from analysis.load.run import Run
from analysis.plot import mechanism as plots_mechanism
from analysis.plot.charts import Chart, save_chart
from analysis.sections.protocol import Place

HEADING = f"Threadpool sweep: how much of `def`'s gap is the default of {DEFAULT_TOKENS}"


@dataclass(frozen=True)
class ThreadpoolTable:
    """The sweep over repeats (aggregate_sweep), what ran (sweep_outcomes), and per scenario its
    table and gaps."""

    scenarios: tuple[str, ...]
    sweep: pd.DataFrame
    ran: pd.DataFrame
    tables: dict[str, SweepTable]
    gaps: dict[str, list[Gap]]


def intro() -> str:
    """What the sweep varies and how to read its tables."""
    return (
        "`def` endpoints run in anyio's threadpool, which allows "
        f"{DEFAULT_TOKENS} threads by default: with more users than tokens, requests queue "
        "for a thread. This run repeated `sync` at several token counts; the verdicts above "
        f"use {DEFAULT_TOKENS} tokens (or the most common count). Per scenario: `def`'s "
        "throughput and p99 at each token count (medians over usable repeats; **bold** = "
        "its best; a count whose repeats stalled says so), the fastest `async def` at the "
        "same users, and the share of the throughput gap between them that the best token "
        "count closed."
    )


class Threadpool:
    """The threadpool sweep section: `sync` run at several token counts."""

    key = "threadpool"
    place = Place.MECHANISM
    reading: tuple[str, ...] = ()

    def scenarios(self, run: Run) -> list[str]:
        """Scenarios whose valid `sync` cells ran at more than one token count."""
        return sweep_scenarios(run.summary)

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> ThreadpoolTable:
        """The sweep aggregated once, and each scenario's table and gaps from it."""
        sweep = aggregate_sweep(run.summary)
        ran = sweep_outcomes(run.summary)
        return ThreadpoolTable(
            tuple(scenarios),
            sweep,
            ran,
            {s: sweep_table(sweep, ran, s) for s in scenarios},
            {s: gaps(sweep, s, ran) for s in scenarios},
        )

    def charts(self, table: ThreadpoolTable, out_dir: Path) -> list[Chart]:
        """Throughput and p99 vs threadpool tokens for each swept scenario."""
        out: list[Chart] = []
        for s in table.scenarios:
            fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
            plots_mechanism.plot_sweep(left, table.sweep, s, "rps")
            plots_mechanism.plot_sweep(right, table.sweep, s, "p99_ms")
            out.append(
                save_chart(
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

    def blocks(self, table: ThreadpoolTable, charts: Sequence[Chart]) -> list[Block]:
        """The intro, then per scenario its table, its gaps in words and its chart."""
        images = {c.scenario: c for c in charts}
        blocks: list[Block] = [Heading(HEADING), Paragraph(intro())]
        for s in table.scenarios:
            t = table.tables[s]
            blocks += [Heading(f"`{s}`", 3), Table(list(t.header), [list(r) for r in t.rows])]
            texts = [gap_text(g) for g in table.gaps[s]]
            if texts:
                blocks.append(Bullets(texts))
            if s in images:
                blocks.append(Image(images[s].path, images[s].title, images[s].caption))
        return blocks


SECTION = Threadpool()
