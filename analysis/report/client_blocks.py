"""The report section "Which HTTP client": one table and one sentence per scenario, a chart."""

from collections.abc import Mapping

import pandas as pd

from analysis.judge.clients import (
    STREAM_FIX_ARM,
    client_noise,
    client_scenarios,
    client_table,
    cpu_text,
    sentence,
    variant_name,
)
from analysis.judge.noise import Noise
from analysis.judge.verdict import fmt_ratio
from analysis.load.run import Run
from analysis.plot.charts import Rendered
from analysis.report.document import Block, Heading, Image, Paragraph, Table

HEADING = "Which HTTP client"
HEADER = ("style", "client", "req/s", "p99", "CPU/req", "x `def`+httpx", "repeats")


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
        style = variant_name(str(r["variant"]))
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


def client_blocks(
    run: Run, rendered: Rendered | None = None, noises: Mapping[str, Noise] | None = None
) -> list[Block]:
    """The section, when a style ran with two clients on some scenario; else nothing.

    `noises`: the verdicts' noise per scenario (judgement.noises, --noise included); a scenario
    without one gets the same rule measured on the cells this section counts.
    """
    names = client_scenarios(run.summary)
    if not names:
        return []
    table = client_table(run.summary, names)
    blocks: list[Block] = [Heading(HEADING), Paragraph(intro())]
    for s in names:
        if table[table["scenario"] == s].empty:
            continue
        noise = (noises or {}).get(s) or client_noise(run.summary, s)
        blocks += [
            Heading(f"`{s}`", 3),
            scenario_table(table, s),
            Paragraph(sentence(table, s, noise) + f" The noise: {noise.text()}."),
        ]
    for chart in rendered.clients if rendered else []:
        blocks.append(Image(chart.path, chart.title, chart.caption))
    return blocks


def has_clients_section(run: Run) -> bool:
    """Whether the report shows the section."""
    return bool(client_scenarios(run.summary))
