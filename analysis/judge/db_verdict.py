"""Which handler style leads on each database, and whether that changes from SQLite to PostgreSQL.

Per scenario and database, each style (variant) is represented by its fastest configuration
with a counted repeat (any driver, any pool). The leader's lead over another style counts only
as the verdicts' does (analysis.judge.verdict.is_clear): the repeat interval above parity and
the median ratio at least 1 + the noise, the run's repeat spread with contract.MIN_NOISE as the
floor; styles within it share the lead. A configuration without a counted repeat (stalled,
invalid, ...) is named with what happened, never ranked. Pure transforms: no I/O.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from analysis.fmt import rate
from analysis.judge.databases import (
    DATABASE_NAMES,
    POSTGRESQL,
    SQLITE,
    spread,
)
from analysis.judge.noise import Noise, scenario_noise
from analysis.judge.transform import ratio_with_spread
from analysis.judge.verdict import MIN_REPEATS, ONE_REPEAT, Ratio, fmt_ratio, is_clear
from analysis.vocabulary import variant_words

YES = "yes"
NO = "no"
UNKNOWN = "cannot tell"


def db_noise(table: pd.DataFrame, scenario: str, override: float | None = None) -> Noise:
    """The verdicts' noise rule on this section's cells: max(MIN_NOISE, the median relative
    repeat spread of throughput over the scenario's configurations with two counted repeats)."""
    part = table[table["scenario"] == scenario]
    return scenario_noise(part.assign(repeats=part["counted"]), scenario, override=override)


def where(row: Mapping[str, object]) -> str:
    """`asyncpg, pool 40+0`: what sets a configuration apart within its database and style
    (and its arm, when another configuration shares the rest: `psycopg, pool 5+10, arm `x``)."""
    note = row.get("arm_note") or ""
    return f"{row['driver']}, pool {row['pool']}" + (f", {note}" if note else "")


def named(row: Mapping[str, object]) -> str:
    """`` `async def` (asyncpg, pool 40+0) ``."""
    return f"{variant_words(str(row['variant']))} ({where(row)})"


def _why_not(row: Mapping[str, object]) -> str:
    if row["stall_kind"]:
        return str(row["stall_text"])
    return str(row["flags"]) or "no counted repeat"


@dataclass(frozen=True)
class DbVerdict:
    """One scenario on one database: the leading style (by its best configuration) and its lead."""

    scenario: str
    database: str
    threshold: float
    # Best configuration per style with a speed, fastest first (rows of database_table).
    best: tuple[Mapping[str, object], ...] = field(default=())
    clear: bool = False
    # Styles within the noise of the leader (the leader first): the winners when `clear`.
    tied: tuple[str, ...] = field(default=())
    runner_up: Mapping[str, object] | None = None
    ratio: Ratio | None = None
    one_repeat: bool = False
    # The leading style's configuration (the fastest with two counted repeats, if any).
    lead: Mapping[str, object] | None = None
    # Styles whose best configuration has one counted repeat: not judged.
    single: tuple[str, ...] = field(default=())
    # Configurations without a counted repeat: `` `def` (psycopg, pool 5+10): deadlock ``.
    excluded: tuple[str, ...] = field(default=())
    # Configurations with a speed but some repeats not counted (stalled, invalid, ...).
    partial: tuple[str, ...] = field(default=())
    # How many configurations ran on this database at the scenario's load.
    configs: int = 0
    text: str = ""

    @property
    def leader(self) -> Mapping[str, object] | None:
        """The leading style's best configuration."""
        return self.lead

    @property
    def decided(self) -> bool:
        """Whether two styles had a speed, so there is a verdict (clear or not)."""
        return len(self.best) >= 2

    @property
    def winners(self) -> tuple[str, ...]:
        """The leading styles when the lead is clear; else ()."""
        return self.tied if self.clear else ()

    def driver_of(self, variant: str) -> str:
        """The best configuration of `variant`: `asyncpg (pool 40+0)`."""
        row = next((r for r in self.best if r["variant"] == variant), None)
        return f"{row['driver']} ({where(row).split(', ', 1)[1]})" if row is not None else "?"


def _beats(a: Mapping[str, object], b: Mapping[str, object], threshold: float) -> bool:
    if min(int(a["counted"]), int(b["counted"])) < MIN_REPEATS:  # type: ignore[call-overload]
        return False
    return is_clear(ratio_with_spread(spread(a), spread(b), "rps"), threshold)


def db_verdict(
    table: pd.DataFrame, scenario: str, database: str, noise: Noise | float
) -> DbVerdict:
    """The verdict of one scenario on one database (rows of analysis.judge.databases)."""
    threshold = noise.value if isinstance(noise, Noise) else float(noise)
    part = table[(table["scenario"] == scenario) & (table["database"] == database)]
    rows = [dict(r) for _, r in part.iterrows()]
    excluded = tuple(f"{named(r)}: {_why_not(r)}" for r in rows if int(r["counted"]) == 0)
    partial = tuple(
        f"{named(r)}: {_why_not(r)}"
        for r in rows
        if int(r["counted"]) > 0 and (r["stall_kind"] or r["flags"])
    )
    # Per style its fastest configuration, among those with the repeats an interval needs if
    # it has any: a single repeat is set aside and named, never "tied" (as the verdicts do).
    measured = sorted(
        (r for r in rows if not math.isnan(float(r["rps"]))),
        key=lambda r: (int(r["counted"]) < MIN_REPEATS, -float(r["rps"])),  # type: ignore[call-overload]
    )
    best: list[dict[str, object]] = []
    for r in measured:
        if r["variant"] not in {b["variant"] for b in best}:
            best.append(r)
    best.sort(key=lambda r: -float(r["rps"]))  # type: ignore[arg-type]
    base = {
        "scenario": scenario,
        "database": database,
        "threshold": threshold,
        "excluded": excluded,
        "partial": partial,
        "configs": len(rows),
    }
    if len(best) < 2:
        return DbVerdict(**base, best=tuple(best), lead=best[0] if best else None)  # type: ignore[arg-type]
    single = [r for r in best if int(r["counted"]) < MIN_REPEATS]  # type: ignore[call-overload]
    judged = [r for r in best if all(r is not x for x in single)]
    one_repeat = len(judged) < 2
    pool = best if one_repeat else judged
    leader = pool[0]
    tied = [r for r in pool if r is leader or not _beats(leader, r, threshold)]
    rest = [r for r in pool if all(r is not t for t in tied)]
    clear = bool(rest) and not one_repeat
    runner_up = rest[0] if rest else pool[1]
    ratio = ratio_with_spread(spread(leader), spread(runner_up), "rps")
    return DbVerdict(
        **base,  # type: ignore[arg-type]
        best=tuple(best),
        lead=leader,
        clear=clear,
        tied=tuple(str(r["variant"]) for r in tied),
        runner_up=runner_up,
        ratio=ratio,
        one_repeat=one_repeat,
        single=() if one_repeat else tuple(named(r) for r in single),
    )


def verdict_text(v: DbVerdict) -> str:
    """`` `async def` (asyncpg, pool 40+0) leads at 2,345/s: x1.80 (1.70-1.90) the best
    `def` (psycopg, pool 40+0), beyond the 5% noise ``, or why there is no clear leader."""
    if not v.configs:
        return "not run at this load"
    if not v.best:
        head = "no style has a speed"
    elif not v.decided:
        only = v.best[0]
        head = (
            f"only {variant_words(str(only['variant']))} has a speed (best: {where(only)}, "
            f"{rate(float(only['rps']))})"
        )
    else:
        leader, other = v.lead or v.best[0], v.runner_up or v.best[1]
        ratio = fmt_ratio(v.ratio)
        if v.clear:
            also = [named(r) for r in v.best if r["variant"] in v.tied and r is not leader]
            tie = f", tied within the noise with {', '.join(also)}" if also else ""
            head = (
                f"{named(leader)} leads at {rate(float(leader['rps']))}{tie}: {ratio} the best "
                f"{named(other)}, beyond the {v.threshold:.0%} noise"
            )
        else:
            lo = v.ratio[1] if v.ratio else math.nan
            why = (
                ONE_REPEAT
                if v.one_repeat
                else "the repeat interval includes parity"
                if math.isnan(lo) or lo <= 1
                else f"inside the {v.threshold:.0%} noise"
            )
            head = (
                f"no clear leader: {named(leader)} at {rate(float(leader['rps']))} leads "
                f"{named(other)} by {ratio} ({why})"
            )
    if v.single:
        head += f" ({', '.join(v.single)}: one counted repeat, not judged)"
    if v.excluded:
        head += "; no speed for " + "; ".join(v.excluded)
    if v.partial:
        head += "; some repeats not counted for " + "; ".join(v.partial)
    return head


@dataclass(frozen=True)
class DbChange:
    """Whether the verdict of a scenario differs between SQLite and PostgreSQL."""

    scenario: str
    answer: str  # YES, NO or UNKNOWN
    text: str


def _winners(v: DbVerdict) -> str:
    """`` `def` with psycopg (pool 40+0) leads ``."""
    who = " and ".join(f"{variant_words(s)} with {v.driver_of(s)}" for s in v.winners)
    return f"{who} {'leads' if len(v.winners) == 1 else 'lead'}"


def _styles(v: DbVerdict) -> frozenset[str]:
    return frozenset(v.winners)


def verdict_change(sqlite: DbVerdict, pg: DbVerdict) -> DbChange:
    """Same leader (or no clear one on both) = no change; naming each database's drivers."""
    s, p = (DATABASE_NAMES[SQLITE], DATABASE_NAMES[POSTGRESQL])
    if not (sqlite.decided and pg.decided):
        lacking = [
            f"{DATABASE_NAMES[v.database]} "
            + (
                "has no cell at this load"
                if not v.configs
                else "has fewer than two styles with a speed"
            )
            for v in (sqlite, pg)
            if not v.decided
        ]
        return DbChange(sqlite.scenario, UNKNOWN, " and ".join(lacking))
    if sqlite.clear and pg.clear:
        if _styles(sqlite) == _styles(pg):
            who = " and ".join(variant_words(x) for x in sqlite.winners)
            verb = "leads" if len(sqlite.winners) == 1 else "lead"
            drivers = "; ".join(
                (f"{variant_words(x)} " if len(sqlite.winners) > 1 else "")
                + f"on {s} with {sqlite.driver_of(x)}, on {p} with {pg.driver_of(x)}"
                for x in sqlite.winners
            )
            return DbChange(sqlite.scenario, NO, f"{who} {verb} on both: {drivers}")
        return DbChange(
            sqlite.scenario,
            YES,
            f"{_winners(sqlite)} on {s}; {_winners(pg)} on {p}",
        )
    if sqlite.clear or pg.clear:
        lead, other = (sqlite, p) if sqlite.clear else (pg, s)
        name = DATABASE_NAMES[lead.database]
        return DbChange(
            sqlite.scenario,
            YES,
            f"{_winners(lead)} on {name}; no style leads beyond the noise on {other}",
        )
    return DbChange(sqlite.scenario, NO, "no style leads beyond the noise on either database")


def verdicts(
    table: pd.DataFrame, scenario: str, noise: Noise | float
) -> tuple[DbVerdict, DbVerdict, DbChange]:
    """(SQLite verdict, PostgreSQL verdict, the change) of one scenario."""
    sqlite = db_verdict(table, scenario, SQLITE, noise)
    pg = db_verdict(table, scenario, POSTGRESQL, noise)
    return sqlite, pg, verdict_change(sqlite, pg)


def sentence(table: pd.DataFrame, scenario: str, noise: Noise | float) -> str:
    """The section's lead for a scenario, all from the numbers."""
    part = table[table["scenario"] == scenario]
    if part.empty:
        return f"`{scenario}`: no configuration to compare."
    sqlite, pg, change = verdicts(table, scenario, noise)
    users = int(part["users"].iloc[0])
    answer = {YES: "**yes**", NO: "**no**", UNKNOWN: "**cannot tell**"}[change.answer]
    return (
        f"`{scenario}` at {users} users: does the verdict change from SQLite to PostgreSQL? "
        f"{answer}: {change.text}. On {DATABASE_NAMES[SQLITE]}: {verdict_text(sqlite)}. On "
        f"{DATABASE_NAMES[POSTGRESQL]}: {verdict_text(pg)}."
    )
