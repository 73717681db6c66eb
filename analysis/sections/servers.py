"""The section "Which ASGI server" (`make bench-servers`, issue 20): for a run whose cells span
more than one server, each scenario's verdict on each server (decided from that server's cells
alone, with the verdicts' rules and that server's own noise) and whether it agrees with the main
server's; per server what `def` did (deadlocked, stalled, neither); one chart of every style's
throughput per server."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table
from analysis.judge.servers import (
    DefOutcome,
    ServerVerdict,
    decide_per_server,
    def_outcomes,
    def_text,
    holds_text,
    noise_override,
    server_scenarios,
    throughput,
    verdict_rows,
)
from analysis.judge.verdict import Verdicts, fmt_ratio
from analysis.load.run import Run
from analysis.plot.charts import Chart, save_chart
from analysis.plot.servers import plot_servers
from analysis.sections.protocol import Place

HEADING = "Which ASGI server: does the verdict depend on it?"
CHART = "servers.png"
VERDICT_HEADER = (
    "scenario",
    "server",
    "users",
    "winner",
    "lead (median ratio, repeat interval)",
    "noise",
    "against the main server",
)
DEF_HEADER = (
    "scenario",
    "server",
    "users",
    "`def`",
    "self-deadlocks (py-spy)",
    "`def` req/s",
    "what its threads waited for",
)


@dataclass(frozen=True)
class ServersTable:
    """The run's servers (main first), each scenario's verdict per server, `def`'s outcome per
    server, and the chart's throughput per scenario x server x style."""

    scenarios: tuple[str, ...]
    servers: tuple[str, ...]
    main: str
    verdicts: tuple[ServerVerdict, ...]
    outcomes: tuple[DefOutcome, ...]
    frame: pd.DataFrame


def intro(table: ServersTable) -> str:
    """What the section compares and how."""
    others = ", ".join(f"`{s}`" for s in table.servers if s != table.main)
    return (
        f"This run served the same cells under {len(table.servers)} ASGI servers: "
        f"`{table.main}` (the main server: every other section of this report reads its cells "
        f"only) and {others} (servers/launch.py says how each is started). Each server's "
        "verdicts are decided from its own cells alone, with the rules of the verdicts above "
        "(the highest load where two styles counted; a lead is clear when its repeat interval "
        "excludes parity and its median beats max(5%, the median repeat spread) of that "
        "server's cells), so no style's repeats mix servers. **against the main server**: "
        "the same verdict when both name the same winner(s) clearly, or neither does."
    )


def verdict_table(rows: Sequence[ServerVerdict]) -> Table:
    """One row per scenario x server."""
    body = []
    for r in rows:
        v = r.verdict
        body.append(
            [
                f"`{r.scenario}`",
                f"`{r.server}`",
                "n/a" if v is None or v.users is None else str(v.users),
                r.winner,
                "n/a" if v is None else fmt_ratio(v.ratio),
                "n/a" if v is None else v.noise,
                r.agreement_text if r.agreement != "differs" else f"**{r.agreement_text}**",
            ]
        )
    return Table(list(VERDICT_HEADER), body)


def def_table(outcomes: Sequence[DefOutcome]) -> Table:
    """One row per scenario x server: what `def` did at its highest load."""
    body = [
        [
            f"`{o.scenario}`",
            f"`{o.server}`",
            str(o.users),
            f"{o.outcome} (of {o.repeats})",
            f"{o.self_deadlocks} of {o.repeats}",
            o.rps_text,
            o.threads or o.stall_evidence or "-",
        ]
        for o in outcomes
    ]
    return Table(list(DEF_HEADER), body)


class Servers:
    """The servers section: a run whose closed-loop cells ran under two servers or more."""

    key = "servers"
    place = Place.FINDINGS
    reading: tuple[str, ...] = (
        "Which ASGI server: one panel per scenario, one group of bars per server, one bar per "
        "style in its colour (median over the counted repeats, whiskers min-max), at the load "
        "each server's verdict was made; an X marks a style that stalled in every repeat there.",
    )

    def scenarios(self, run: Run) -> list[str]:
        """Scenarios that ran under two servers or more (analysis.judge.servers)."""
        return server_scenarios(run.every_server)

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> ServersTable:
        """Every server's verdicts (the main verdicts' --noise, if given), their agreement with
        the main server's, `def`'s outcomes and the chart's throughput."""
        servers = [run.server, *(s for s in run.servers if s != run.server)]
        # The main server's are the verdicts already decided (from run.summary: its rows alone).
        per_server = {
            run.server: decided,
            **decide_per_server(run.every_server, servers[1:], noise_override(decided)),
        }
        rows = verdict_rows(per_server, scenarios, run.server)
        outcomes = def_outcomes(run.every_server, scenarios, servers)
        return ServersTable(
            tuple(scenarios),
            tuple(servers),
            run.server,
            tuple(rows),
            tuple(outcomes),
            throughput(per_server, scenarios),
        )

    def charts(self, table: ServersTable, out_dir: Path) -> list[Chart]:
        """Throughput per style per server, one panel per scenario."""
        names = [s for s in table.scenarios if not table.frame[table.frame.scenario == s].empty]
        if not names:
            return []
        fig, axes = plt.subplots(
            1, len(names), figsize=(5 * len(names) + 1, 5), layout="constrained", squeeze=False
        )
        for ax, scenario in zip(axes[0], names, strict=True):
            plot_servers(ax, table.frame, scenario, list(table.servers))
        fig.suptitle("Which ASGI server: throughput per style on each server")
        return [
            save_chart(
                fig,
                out_dir / CHART,
                "Which ASGI server: throughput per style",
                "",
                "Median over the counted repeats (whiskers: min-max) at each server's verdict "
                "load, in each style's colour; X: the style stalled in every repeat there.",
            )
        ]

    def blocks(self, table: ServersTable, charts: Sequence[Chart]) -> list[Block]:
        """The intro, the verdict per server and what holds, `def` per server, the chart."""
        blocks: list[Block] = [
            Heading(HEADING),
            Paragraph(intro(table)),
            Bullets(holds_text(table.verdicts, table.main)),
            verdict_table(table.verdicts),
        ]
        if table.outcomes:
            blocks += [
                Heading("`def` per server: deadlocks and stalls", 3),
                Paragraph(
                    "What `def` (the default arm's `sync`) did at its highest load on each "
                    "server, over every repeat: `deadlock` = no completion for `stall_s` with "
                    "requests in flight, `stall N s` = the longest gap without a completion, "
                    "ended by completions or errors, `no` = neither. **self-deadlocks**: "
                    "repeats whose thread dump found one worker thread holding httpcore's pool "
                    "lock and waiting for it (encode/httpcore#990)."
                ),
                Bullets(def_text(table.outcomes)),
                def_table(table.outcomes),
            ]
        blocks += [Image(c.path, c.title, c.caption) for c in charts]
        return blocks


SECTION = Servers()
