"""The section "Which HTTP client" (`make bench-clients`): per scenario a table of each handler
style with each client and the sentence computed from it, then one chart for all scenarios."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis.document import Block, Heading, Image, Paragraph, Table
from analysis.judge.clients import client_noise, client_scenarios, client_table, cpu_text, sentence
from analysis.judge.noise import Noise
from analysis.judge.verdict import Verdicts, fmt_ratio
from analysis.load.run import Run
from analysis.plot.charts import Chart, save_chart
from analysis.plot.clients import plot_clients
from analysis.sections.protocol import Place
from analysis.vocabulary import STREAM_FIX_ARM, variant_words

HEADING = "Which HTTP client"
HEADER = ("style", "client", "req/s", "p99", "CPU/req", "x `def`+httpx", "repeats")
CHART = "clients.png"


@dataclass(frozen=True)
class ClientsTable:
    """analysis.judge.clients.client_table of the section's scenarios, and each one's noise."""

    scenarios: tuple[str, ...]
    frame: pd.DataFrame
    noises: dict[str, Noise]

    def shown(self) -> list[str]:
        """The scenarios with rows, in order."""
        return [s for s in self.scenarios if not self.frame[self.frame["scenario"] == s].empty]


def intro() -> str:
    """How to read the section."""
    return (
        "Each handler style with each HTTP client the run measured, at the highest load where "
        "a style ran with two clients. req/s: successful requests per second, median over the "
        "counted repeats (ok, valid, steady, not stalled), min–max in brackets; p99 the median "
        "over them (`≥` a lower bound from censored requests); CPU/req: server CPU ms per "
        "successful request. x `def`+httpx: throughput over the `def` + httpx row, with the "
        "interval min/max – max/min over the repeats, as the verdicts compute it. repeats: how "
        "many counted, and why the others were not. A client changes throughput only when its "
        "ratio to the same style with httpx clears the run's noise as a verdict's lead must "
        "(interval above parity and median beyond max(5%, the median repeat spread)). "
        f"`chat_stream`'s `def` rows ran in the `{STREAM_FIX_ARM}` arm (admission limit below "
        "the thread tokens, closing `StreamingResponse`): plain `def` streaming stalls whatever "
        "the client (see the stalls section of `make bench-stalls`)."
    )


def _repeats(row: pd.Series) -> str:
    text = f"{int(row['counted'])} of {int(row['repeats'])} counted"
    return f"{text}; {row['flags']}" if row["flags"] else text


def scenario_table(table: pd.DataFrame, scenario: str) -> Table:
    """One row per style x client: req/s, p99, CPU/req, ratio to `def` + httpx, repeats."""
    rows = []
    for _, r in table[table["scenario"] == scenario].iterrows():
        style = variant_words(str(r["variant"]))
        if r["arm"] == STREAM_FIX_ARM:
            style += " (with the stream fix)"
        ratio = (
            "baseline"
            if r["baseline"]
            else fmt_ratio((float(r["ratio"]), float(r["ratio_lo"]), float(r["ratio_hi"])))
        )
        rows.append(
            [
                style,
                str(r["client"]),
                str(r["rps_text"]),
                str(r["p99_text"]),
                cpu_text(
                    float(r["cpu_ms_per_req"]),
                    float(r["cpu_lo"]),
                    float(r["cpu_hi"]),
                    int(r["counted"]),
                ),
                ratio,
                _repeats(r),
            ]
        )
    return Table(list(HEADER), rows)


class Clients:
    """The clients section: a style run with two HTTP clients or more on some scenario."""

    key = "clients"
    place = Place.FINDINGS
    reading: tuple[str, ...] = ()

    def scenarios(self, run: Run) -> list[str]:
        """Scenarios where a style ran with two clients (analysis.judge.clients)."""
        return client_scenarios(run.summary)

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> ClientsTable:
        """The client table, and per scenario the verdicts' noise (--noise included); one
        without a verdict gets the same rule measured on the cells this section counts."""
        frame = client_table(run.summary, list(scenarios))
        noises = {s: decided.noises.get(s) or client_noise(run.summary, s) for s in scenarios}
        return ClientsTable(tuple(scenarios), frame, noises)

    def charts(self, table: ClientsTable, out_dir: Path) -> list[Chart]:
        """Throughput (top) and server CPU per request (bottom) per style x client, one column
        of panels per scenario."""
        names = table.shown()
        if not names:
            return []
        frame = table.frame
        rows = int(frame.groupby("scenario").size().max())
        fig, axes = plt.subplots(
            2,
            len(names),
            figsize=(5.5 * len(names) + 1.5, 2 * (1.2 + 0.4 * rows)),
            layout="constrained",
            squeeze=False,
        )
        for i, s in enumerate(names):
            plot_clients(axes[0][i], frame, s, "rps")
            plot_clients(axes[1][i], frame, s, "cpu_ms_per_req")
        fig.suptitle("Which HTTP client: throughput and server CPU per request, by style x client")
        return [
            save_chart(
                fig,
                out_dir / CHART,
                "Which HTTP client: throughput and CPU per request",
                "",
                "Median over the counted repeats (whiskers: min-max), in each style's colour; top "
                "successful requests/s (longer is faster), bottom server CPU ms per request "
                "(shorter is cheaper). `def` on chat_stream ran with the stream fix.",
            )
        ]

    def blocks(self, table: ClientsTable, charts: Sequence[Chart]) -> list[Block]:
        """The intro, per scenario its table and sentence (with the noise), then the chart."""
        blocks: list[Block] = [Heading(HEADING), Paragraph(intro())]
        for s in table.shown():
            noise = table.noises[s]
            blocks += [
                Heading(f"`{s}`", 3),
                scenario_table(table.frame, s),
                Paragraph(sentence(table.frame, s, noise) + f" The noise: {noise.text()}."),
            ]
        blocks += [Image(c.path, c.title, c.caption) for c in charts]
        return blocks


SECTION = Clients()
