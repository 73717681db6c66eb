"""Does the verdict depend on the ASGI server? (`make bench-servers`, issue 20)

Per server, every verdict is decided from that server's cells alone (analysis.judge.verdict:
the same rules, its own repeats, its own noise), so no style's repeats ever mix servers, and is
compared with the main server's (Run.server: the contract's default when the run has it, what
every other section of the report reads). Per server and scenario, what `def` did at its highest
load (analysis.judge.stalls' outcome of the default `def` row): deadlocked (no completion for
the matrix's `stall_s`), stalled for a while (a gap of contract.GAP_NOTE_S or more) or neither,
and in how many passes py-spy named a self-deadlock (summary `threads`). Pure transforms.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

import contract
from analysis.judge.cells import arms, column
from analysis.judge.repeats import Repeats
from analysis.judge.stalls import DEFAULT, stall_table
from analysis.judge.transform import at_reference_tokens, scenarios
from analysis.judge.verdict import Verdict, Verdicts, decide_verdicts, fmt_ratio, leader_label
from analysis.load.run import of_server, servers_of
from analysis.vocabulary import BASELINE, DEFAULT_ARM, label, ordered

# Agreement of one server's verdict with the main server's.
AGREES = "same verdict"
DIFFERS = "differs"
NO_VERDICT = "no verdict"


def server_scenarios(every: pd.DataFrame) -> list[str]:
    """Scenarios whose cells ran under two servers or more (none: the run has one server)."""
    if len(servers_of(every)) < 2:
        return []
    named = every.assign(_server=every["server"].astype(str).str.strip())
    counts = named.groupby("scenario")["_server"].nunique()
    return [s for s in scenarios(every) if counts.get(s, 0) >= 2]


def decide_per_server(
    every: pd.DataFrame, servers: Sequence[str], noise: float | None = None
) -> dict[str, Verdicts]:
    """Each server's verdicts from its own cells (`noise` overrides each one's measured noise,
    as `--noise` does for the main verdicts)."""
    return {s: decide_verdicts(of_server(every, s), noise) for s in servers}


def noise_override(decided: Verdicts) -> float | None:
    """The `--noise` the main verdicts were decided with (None: each measured its own)."""
    values = {n.value for n in decided.noises.values() if n.override}
    return values.pop() if len(values) == 1 else None


def verdict_of(verdicts: Verdicts, scenario: str) -> Verdict | None:
    """One scenario's verdict (None when the server has no cell of it)."""
    return next((v for v in verdicts.verdicts if v.scenario == scenario), None)


def winner_text(verdict: Verdict | None) -> str:
    """`async (aiohttp)` x1.84 (1.59-2.04), `no clear winner`, or why there is no verdict."""
    if verdict is None:
        return "not run"
    if verdict.leader is None:
        return "no verdict (not enough counted cells)"
    head = leader_label(verdict)
    lead = fmt_ratio(verdict.ratio)
    if not verdict.clear:
        return f"{head} (`{verdict.leader}` leads by {lead})"
    what = "less CPU per request" if verdict.lower_is_better else "the throughput"
    return f"{head}: {lead} {what} of `{verdict.runner_up}`"


def agreement(verdict: Verdict | None, reference: Verdict | None) -> tuple[str, str]:
    """(AGREES, DIFFERS or NO_VERDICT; in words) of a server's verdict against the main one's.

    Two verdicts agree when both name the same winners clearly, or neither names one.
    """
    if verdict is None or reference is None or verdict.leader is None or reference.leader is None:
        return NO_VERDICT, "no verdict to compare"
    where = "" if verdict.users == reference.users else f" (at {verdict.users} users)"
    if verdict.clear and reference.clear and set(verdict.winners) == set(reference.winners):
        return AGREES, f"same winner{where}"
    if not verdict.clear and not reference.clear:
        return AGREES, f"no clear winner on either{where}"
    ours = leader_label(verdict) if verdict.clear else "no clear winner"
    theirs = leader_label(reference) if reference.clear else "no clear winner"
    return DIFFERS, f"{ours} here, {theirs} there{where}"


@dataclass(frozen=True)
class ServerVerdict:
    """One scenario's verdict on one server, and how it compares with the main server's."""

    scenario: str
    server: str
    verdict: Verdict | None
    agreement: str
    agreement_text: str

    @property
    def winner(self) -> str:
        """The verdict in a table cell."""
        return winner_text(self.verdict)


def verdict_rows(
    per_server: Mapping[str, Verdicts], names: Sequence[str], main: str
) -> list[ServerVerdict]:
    """Per scenario (in `names`' order) and server: its verdict and its agreement with `main`."""
    out = []
    for scenario in names:
        reference = verdict_of(per_server[main], scenario) if main in per_server else None
        for server, verdicts in per_server.items():
            verdict = verdict_of(verdicts, scenario)
            if server == main:
                kind, text = (
                    (AGREES, "the reference")
                    if verdict is not None and verdict.leader
                    else (NO_VERDICT, "the reference (no verdict)")
                )
            else:
                kind, text = agreement(verdict, reference)
            out.append(ServerVerdict(scenario, server, verdict, kind, text))
    return out


@dataclass(frozen=True)
class DefOutcome:
    """What `def` (the default arm's `sync`) did on one server at one scenario's highest load."""

    scenario: str
    server: str
    users: int
    repeats: int
    # analysis.judge.stalls' outcome: `deadlock (2 of 5 repeats)`, `stall 5.1 s`, `no`, ...
    outcome: str
    outcome_kind: str
    stalled: int
    # Passes whose thread dump named a self-deadlock (summary `threads`).
    self_deadlocks: int
    rps_text: str
    threads: str
    stall_evidence: str


def self_deadlocks(rows: pd.DataFrame) -> int:
    """Rows whose `threads` diagnosis is a self-deadlock (loadtests.threads)."""
    texts = column(rows, "threads", "").astype(str).str.strip()
    return int(texts.str.startswith(contract.SELF_DEADLOCK).sum())


def def_outcomes(
    every: pd.DataFrame, names: Sequence[str], servers: Sequence[str]
) -> list[DefOutcome]:
    """Per scenario with `def` cells and per server: `def`'s outcome at its highest load."""
    out = []
    for scenario in names:
        for server in servers:
            rows = of_server(every, server)
            mine = rows[
                (rows["scenario"] == scenario)
                & (rows["style"] == BASELINE)
                & (arms(rows) == DEFAULT_ARM)
            ]
            if mine.empty:
                continue
            users = int(mine["users"].max())
            table = stall_table(rows, [scenario])
            row = table[
                (table["kind"] == DEFAULT)
                & (table["style"] == BASELINE)
                & (table["users"] == users)
            ]
            if row.empty:
                continue
            r = row.iloc[0]
            at = at_reference_tokens(mine[mine["users"] == users])
            out.append(
                DefOutcome(
                    scenario,
                    server,
                    users,
                    int(r["repeats"]),
                    str(r["outcome"]),
                    str(r["outcome_kind"]),
                    int(r["stalled"]),
                    self_deadlocks(at),
                    str(r["rps_text"]),
                    str(r["threads"]),
                    str(r["stall_evidence"]),
                )
            )
    return out


def throughput(per_server: Mapping[str, Verdicts], names: Sequence[str]) -> pd.DataFrame:
    """Per scenario x server x style at the main verdict's load: throughput over the counted
    repeats (median, min, max) and `stalled` repeats: the chart's numbers."""
    records = []
    for server, decided in per_server.items():
        agg = decided.counted
        stalled = {(s.scenario, s.style, s.users): s for s in decided.stalls}
        for scenario in names:
            verdict = verdict_of(decided, scenario)
            part = agg[agg["scenario"] == scenario]
            if part.empty and not any(k[0] == scenario for k in stalled):
                continue
            users = (
                verdict.users
                if verdict is not None and verdict.users is not None
                else int(part["users"].max())
                if not part.empty
                else max(k[2] for k in stalled if k[0] == scenario)
            )
            at = part[part["users"] == users].set_index("style")
            styles = ordered([*at.index, *(k[1] for k in stalled if k[:1] == (scenario,))])
            for style in styles:
                stall = stalled.get((scenario, style, users))
                rps = (
                    Repeats.from_row(at.loc[style], "rps")
                    if style in at.index
                    else Repeats(math.nan, math.nan, math.nan, 0)
                )
                records.append(
                    {
                        "scenario": scenario,
                        "server": server,
                        "users": users,
                        "style": style,
                        "label": label(style),
                        "rps": rps.median,
                        "rps_lo": rps.lo,
                        "rps_hi": rps.hi,
                        "repeats": rps.n,
                        "stalled": stall.stalled if stall else 0,
                    }
                )
    columns = ["scenario", "server", "users", "style", "label", "rps", "rps_lo", "rps_hi"]
    return pd.DataFrame(records, columns=[*columns, "repeats", "stalled"])


def holds_text(rows: Sequence[ServerVerdict], main: str) -> list[str]:
    """One sentence per scenario: does its verdict hold on every server, or where it changes."""
    out = []
    for scenario in dict.fromkeys(r.scenario for r in rows):
        mine = [r for r in rows if r.scenario == scenario and r.server != main]
        reference = next((r for r in rows if r.scenario == scenario and r.server == main), None)
        base = reference.winner if reference is not None else "not run"
        differs = [r for r in mine if r.agreement == DIFFERS]
        unknown = [r for r in mine if r.agreement == NO_VERDICT]
        if reference is None or reference.agreement == NO_VERDICT:
            named = ", ".join(f"`{r.server}` {r.winner}" for r in mine)
            out.append(f"`{scenario}`: no verdict on `{main}` to compare with ({named}).")
            continue
        if not differs and not unknown:
            head = f"`{scenario}`: the verdict holds on every server ({base} on `{main}`)"
        elif differs:
            where = "; ".join(f"`{r.server}`: {r.agreement_text}" for r in differs)
            head = f"`{scenario}`: the verdict changes on {len(differs)} server(s) ({where})"
        else:
            head = f"`{scenario}`: no server disagrees with `{main}` ({base})"
        if unknown:
            head += "; no verdict on " + ", ".join(f"`{r.server}`" for r in unknown)
        out.append(head + ".")
    return out


def def_text(outcomes: Sequence[DefOutcome]) -> list[str]:
    """One sentence per scenario: on which servers `def` deadlocked, stalled or ran."""
    out = []
    for scenario in dict.fromkeys(o.scenario for o in outcomes):
        mine = [o for o in outcomes if o.scenario == scenario]
        parts = []
        for o in mine:
            named = f", {o.self_deadlocks} named a self-deadlock" if o.self_deadlocks else ""
            parts.append(f"`{o.server}` {o.outcome} (of {o.repeats} at {o.users} users{named})")
        out.append(f"`def` on `{scenario}`: " + "; ".join(parts) + ".")
    return out
