"""`def` stalls and deadlocks (`make bench-stalls`): each candidate fix as an arm of `sync`.

Per scenario x row x users, where a row is the default `def` app, one fix (a named arm, or a
base cell of `def` with another client, e.g. httpx2) or `async def` as the reference: did it
deadlock (`stalled`: no completion for the matrix's `stall_s`), stall for a while (a gap of
contract.GAP_NOTE_S or more without a completion, ended by completions or errors), or neither;
its throughput, p99 and failed requests, and what its threads were doing (`threads`, a py-spy
dump taken when nothing completed for a few seconds). Numbers over repeats are the repeat
statistic (analysis.judge.repeats). Pure transforms: no I/O, no formatting beyond the cells' own
text.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

import contract
from analysis.fmt import rate
from analysis.judge.cells import arms, column, postgres_arms
from analysis.judge.observer import observer_arms
from analysis.judge.repeats import Repeats, numeric
from analysis.judge.samples import tail_over_repeats, tail_text
from analysis.judge.transform import at_reference_tokens, require_columns, scenarios
from analysis.vocabulary import (
    ASYNC_REFERENCES,
    BASELINE,
    CANCEL_ARM,
    DEFAULT_ARM,
    STREAM_FIX_ARM,
)

# The scenarios `make bench-stalls` runs, in the order the report shows them.
STALL_SCENARIOS: tuple[str, ...] = ("items_read", "items_write", "chat_stream")
# The advice ranks the fixes by their throughput at this load (or the highest below it).
ADVICE_USERS = 200

# What a row is: the app as the docs write it, a fix of it, `async def`, or another style.
DEFAULT = "default"
FIX = "fix"
REFERENCE = "reference"
OTHER = "other"
KIND_ORDER: tuple[str, ...] = (DEFAULT, FIX, REFERENCE, OTHER)

# A cell's outcome, worst first.
FAILED = "failed"
DEADLOCK = "deadlock"
STALL = "stall"
NO = "no"


@dataclass(frozen=True)
class Fix:
    """One fix: what a reader would change in their code, and what that does."""

    label: str
    detail: str


# Arm name (loadtests/matrices/stalls.toml) -> the fix it measures. An arm not listed here is
# shown by its name, with its settings from the manifest.
FIXES: dict[str, Fix] = {
    "db_scope_function": Fix(
        '`Depends(get_session, scope="function")`',
        "the dependency's exit (closing the session) tied to the endpoint function's scope "
        "(FastAPI >= 0.121) instead of the whole request's",
    ),
    "db_pool_40": Fix(
        "`create_engine(..., pool_size=40)`",
        "a DB pool as large as the threadpool: 40 connections (+10 overflow) for 40 tokens",
    ),
    "db_session_in_endpoint": Fix(
        "a session per statement inside the endpoint (`with Session(engine) as s:`)",
        "each statement in its own session and committed transaction, opened and closed inside "
        "the endpoint; the `yield` dependency still runs but holds no connection",
    ),
    "db_max_concurrency": Fix(
        "`Depends(get_session, max_concurrency=15)`",
        "at most as many sessions as the pool has connections (5 + 10 overflow); the other "
        "requests wait without a thread",
    ),
    "fastapi_overflow": Fix(
        "fastapi-overflow",
        "that package's patch: response validation of `def` endpoints on 5 reserved threads",
    ),
    "stream_close_response": Fix(
        "upstream response closed by the `StreamingResponse`",
        "closed however the stream ends, not left to the relay generator's `finally` (which "
        "Starlette never runs when the client leaves)",
    ),
    "stream_max_concurrency": Fix(
        "`Depends(admit, max_concurrency=30)` on the chat route",
        "at most 30 chat requests at once, streams counted to their last byte: fewer than the "
        "40 tokens, so a relay always finds one (`admit` is a `def` `yield` dependency: one "
        "more thread hop per request)",
    ),
    "stream_close_and_limit": Fix(
        "both: closing `StreamingResponse` and `max_concurrency=30`",
        "the admission limit keeps every relay supplied with a thread, the closing response "
        "releases the upstream connection of a client that hung up",
    ),
    "stream_pool_20": Fix(
        "`httpx.Limits(max_connections=20)`",
        "an upstream pool smaller than the threadpool: 20 connections for 40 tokens",
    ),
}
# `def` base cells with another client than the default one: a fix by a library change.
CLIENT_FIXES: dict[str, Fix] = {
    "sync (httpx2)": Fix(
        "httpx2",
        "the httpx fork whose connection-pool lock is re-entrant (encode/httpcore#990)",
    ),
}
DEFAULT_LABELS: dict[str, str] = {
    "items_read": "default (`yield` session dependency)",
    "items_write": "default (`yield` session dependency)",
    "chat_stream": "default (httpx)",
}
# The `async def` references, as the section's rows and chart name them (no code marks: a chart).
REFERENCE_LABELS: dict[str, str] = dict(
    zip(ASYNC_REFERENCES, ("async def (reference)", "async def + aiohttp (reference)"), strict=True)
)

COLUMNS: tuple[str, ...] = (
    "scenario",
    "kind",
    "label",
    "arm",
    "style",
    "users",
    "repeats",
    "failed",
    "stalled",
    "gap_max_s",
    "outcome",
    "outcome_kind",
    "rps",
    "rps_lo",
    "rps_hi",
    "rps_text",
    "p99_ms",
    "p99_bound",
    "p99_text",
    "errors",
    "error_p50_ms",
    "threads",
    "stall_evidence",
)


@dataclass(frozen=True)
class RowId:
    """One line of a scenario's table: which cells, what kind, how it is labelled."""

    scenario: str
    arm: str
    style: str
    kind: str
    label: str


def row_id(scenario: str, style: str, arm: str) -> RowId:
    """Name a scenario x style x arm by what was changed from FastAPI as the docs write it."""
    if arm != DEFAULT_ARM:
        fix = FIXES.get(arm)
        name = fix.label if fix else f"arm `{arm}`"
        if style != BASELINE:
            name += f" ({style})"
        return RowId(scenario, arm, style, FIX, name)
    if style == BASELINE:
        return RowId(scenario, arm, style, DEFAULT, DEFAULT_LABELS.get(scenario, "default"))
    if style in CLIENT_FIXES:
        return RowId(scenario, arm, style, FIX, CLIENT_FIXES[style].label)
    if style in REFERENCE_LABELS:
        return RowId(scenario, arm, style, REFERENCE, REFERENCE_LABELS[style])
    return RowId(scenario, arm, style, OTHER, f"`{style}`")


# Arms another section compares on (clients.toml's `stream_fix`: `def` streaming as fixed, run
# with each HTTP client for analysis.judge.clients; abandon.toml's `cancel`, the section "Requests
# whose client left"): not a fix of a stall measured against the default here.
COMPARISON_ARMS: frozenset[str] = frozenset({STREAM_FIX_ARM, CANCEL_ARM})


def fix_arms(summary: pd.DataFrame) -> list[str]:
    """Named arms that change a server setting (not the observer-effect arms, nor the
    COMPARISON_ARMS of another section, nor arms that moved the app to PostgreSQL: the
    "SQLite vs PostgreSQL" section's), sorted."""
    named = set(arms(summary)) - {DEFAULT_ARM} - set(observer_arms(summary)) - COMPARISON_ARMS
    return sorted(named - postgres_arms(summary))


def stall_scenarios(summary: pd.DataFrame) -> list[str]:
    """Scenarios with cells of a fix arm: the ones the stalls section shows.

    `make bench-stalls`'s scenarios first (STALL_SCENARIOS), any other one after.
    """
    if "arm" not in summary:
        return []
    fixes = fix_arms(summary)
    if not fixes:
        return []
    present = set(summary.loc[arms(summary).isin(fixes), "scenario"].astype(str))
    ordered = [s for s in STALL_SCENARIOS if s in present]
    return ordered + [s for s in scenarios(summary) if s in present and s not in ordered]


def _outcome(gap: float, stalled: int, failed: int, repeats: int) -> tuple[str, str]:
    """(kind, text): deadlock, a stall of N s, no, or failed."""
    if failed == repeats:
        return FAILED, FAILED
    if stalled:
        share = f" ({stalled} of {repeats} repeats)" if repeats > 1 and stalled < repeats else ""
        return DEADLOCK, f"{DEADLOCK}{share}"
    if not math.isnan(gap) and gap >= contract.GAP_NOTE_S:
        return STALL, f"{STALL} {gap:.1f} s"
    return NO, NO


def _first_text(values: Iterable[object]) -> str:
    for v in values:
        if v is not None and not pd.isna(v) and str(v).strip():  # type: ignore[call-overload]
            return str(v).strip()
    return ""


def _cell(rows: pd.DataFrame) -> dict[str, Any]:
    """One scenario x row x users: every repeat, stalled ones included (the repeat statistic of
    analysis.judge.repeats over the repeats that ran)."""
    repeats = len(rows)
    ran = rows[column(rows, "status", "ok") == "ok"]
    failed = repeats - len(ran)
    stalled_flags = column(ran, "stalled", False).astype(bool)
    stalled = int(stalled_flags.sum())
    gap = float(numeric(ran, "gap_max_s").max()) if len(ran) else math.nan
    kind, text = _outcome(gap, stalled, failed, repeats)
    rps = Repeats.over(ran, "rps")
    errors = numeric(ran, "errors").fillna(0) + numeric(ran, "timeouts").fillna(0)
    tail_row = tail_over_repeats(ran)
    p99, bound = tail_text(tail_row) if len(ran) else ("n/a", False)
    # The diagnosis of a stalled repeat first: that is the dump worth reading.
    order = pd.concat([ran[stalled_flags], ran[~stalled_flags]]) if len(ran) else ran
    return {
        "repeats": repeats,
        "failed": failed,
        "stalled": stalled,
        "gap_max_s": gap,
        "outcome": text,
        "outcome_kind": kind,
        "rps": rps.median,
        "rps_lo": rps.lo,
        "rps_hi": rps.hi,
        "rps_text": rps.text(),
        "p99_ms": tail_row["p99_ms"],
        "p99_bound": bound,
        "p99_text": p99,
        "errors": Repeats.of(errors).median if len(ran) else math.nan,
        "error_p50_ms": Repeats.over(ran, "error_p50_ms").median,
        "threads": _first_text(column(order, "threads", "")),
        "stall_evidence": _first_text(column(order, "stall_evidence", "")),
    }


def stall_table(summary: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per scenario x row x users (COLUMNS): outcome, throughput, p99, errors, threads.

    Rows are the default arm's styles and every fix arm (observer-effect arms left out) of
    `names` (default: stall_scenarios), ordered default, fixes (FIXES order), references.
    """
    require_columns(summary, ["scenario", "style", "users", "status"], "summary")
    names = stall_scenarios(summary) if names is None else list(names)
    keep_arms = {DEFAULT_ARM, *fix_arms(summary)}
    rows = summary[summary["scenario"].isin(names) & arms(summary).isin(keep_arms)]
    rows = at_reference_tokens(rows).assign(_arm=arms(rows))
    records = []
    for (scenario, arm, style, users), part in rows.groupby(
        ["scenario", "_arm", "style", "users"], sort=False
    ):
        rid = row_id(str(scenario), str(style), str(arm))
        records.append(
            {
                "scenario": rid.scenario,
                "kind": rid.kind,
                "label": rid.label,
                "arm": rid.arm,
                "style": rid.style,
                "users": int(users),
                **_cell(part),
            }
        )
    if not records:
        return pd.DataFrame(columns=list(COLUMNS))
    out = pd.DataFrame(records, columns=list(COLUMNS))
    return out.iloc[_order(out)].reset_index(drop=True)


def _order(table: pd.DataFrame) -> list[int]:
    scenario_rank = {s: i for i, s in enumerate(dict.fromkeys(table["scenario"]))}
    fix_rank = {a: i for i, a in enumerate(FIXES)}

    def key(i: int) -> tuple:
        r = table.iloc[i]
        return (
            scenario_rank[r["scenario"]],
            KIND_ORDER.index(r["kind"]),
            r["arm"] != DEFAULT_ARM,  # client fixes (base cells) before the arms
            fix_rank.get(r["arm"], len(fix_rank)),
            r["arm"],
            r["style"],
            r["users"],
        )

    return sorted(range(len(table)), key=key)


def row_labels(table: pd.DataFrame, scenario: str) -> list[RowId]:
    """The rows of one scenario's table, in order."""
    part = table[table["scenario"] == scenario]
    seen: dict[tuple[str, str], RowId] = {}
    for r in part.itertuples():
        seen.setdefault(
            (str(r.arm), str(r.style)),
            RowId(scenario, str(r.arm), str(r.style), str(r.kind), str(r.label)),
        )
    return list(seen.values())


def cells_of(table: pd.DataFrame, row: RowId) -> pd.DataFrame:
    """One row's cells, indexed by users."""
    part = table[
        (table["scenario"] == row.scenario)
        & (table["arm"] == row.arm)
        & (table["style"] == row.style)
    ]
    return part.set_index("users").sort_index()


def top_threads(table: pd.DataFrame, row: RowId) -> tuple[int | None, str]:
    """The thread diagnosis at the row's highest load that has one: (users, text)."""
    cells = cells_of(table, row)
    for users in sorted(cells.index, reverse=True):
        text = str(cells.loc[users, "threads"] or "")
        if text.strip():
            return int(users), text.strip()
    return None, ""


def fix_settings(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Arm name -> its server settings as the manifest's matrix recorded them (`k = v`)."""
    matrix = manifest.get("matrix")
    listed = matrix.get("arms") if isinstance(matrix, Mapping) else None
    out: dict[str, str] = {}
    for arm in listed if isinstance(listed, list) else []:
        if not isinstance(arm, Mapping) or not isinstance(arm.get("env"), Mapping):
            continue
        out[str(arm.get("name", ""))] = ", ".join(
            f"`{k} = {_setting(v)}`" for k, v in arm["env"].items()
        )
    return out


def _setting(v: object) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return f'"{v}"' if isinstance(v, str) else str(v)


# --- the advice: computed from the numbers -------------------------------------------------------


@dataclass(frozen=True)
class RowSummary:
    """One row over every load: where it stalled and how fast it was at the advice's load."""

    row: RowId
    levels: tuple[int, ...]
    bad: tuple[tuple[int, str], ...]  # (users, outcome text) where it did not run clean
    rps: float  # at the advice's load

    @property
    def clean(self) -> bool:
        """Never stalled, deadlocked, failed or answered an error, at every load of the run."""
        return not self.bad

    def where(self) -> str:
        """`deadlock at 200 and 400 users, stall 10.2 s at 50 users`."""
        by_outcome: dict[str, list[int]] = {}
        for users, text in self.bad:
            by_outcome.setdefault(text, []).append(users)
        return ", ".join(
            f"{text} at {_and(str(u) for u in users)} users" for text, users in by_outcome.items()
        )


def _and(items: Iterable[str]) -> str:
    words = list(items)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def advice_users(table: pd.DataFrame, scenario: str) -> int | None:
    """ADVICE_USERS if the scenario ran it, else the highest load below it, else the lowest."""
    levels = sorted(int(u) for u in table.loc[table["scenario"] == scenario, "users"].unique())
    if not levels:
        return None
    below = [u for u in levels if u <= ADVICE_USERS]
    return below[-1] if below else levels[0]


def summarize(table: pd.DataFrame, scenario: str) -> list[RowSummary]:
    """Every row of a scenario: its unclean loads and its throughput at advice_users."""
    at = advice_users(table, scenario)
    # A row is clean only where it ran every load of the scenario, without a stall or an error:
    # a fix that turns a stall into fast errors, or was not run at the hard load, is not one.
    every = sorted(int(u) for u in table.loc[table["scenario"] == scenario, "users"].unique())
    out = []
    for row in row_labels(table, scenario):
        cells = cells_of(table, row)
        bad = [(int(u), str(c["outcome"])) for u, c in cells.iterrows() if c["outcome_kind"] != NO]
        bad += [
            (int(u), f"{int(c['errors'])} errors")
            for u, c in cells.iterrows()
            if c["outcome_kind"] == NO and (c.get("errors") or 0) > 0
        ]
        if row.kind == FIX:
            bad += [(u, "not run") for u in every if u not in cells.index]
        rps = float(cells.loc[at, "rps"]) if at in cells.index else math.nan
        out.append(RowSummary(row, tuple(int(u) for u in cells.index), tuple(sorted(bad)), rps))
    return out


def _the(label: str) -> str:
    """`the default (httpx)` from a default row's label."""
    return f"the {label}" if label.startswith("default") else f"the default ({label})"


def _rank(rows: Sequence[RowSummary]) -> list[RowSummary]:
    return sorted(rows, key=lambda r: (math.isnan(r.rps), -r.rps if not math.isnan(r.rps) else 0))


def advice(table: pd.DataFrame, scenario: str) -> str:
    """One sentence for a scenario: the default's stalls, the fixes that never stalled, fastest
    first at ADVICE_USERS users, against the default and `async def`; all from the numbers."""
    rows = summarize(table, scenario)
    at = advice_users(table, scenario)
    default = next((r for r in rows if r.row.kind == DEFAULT), None)
    fixes = [r for r in rows if r.row.kind == FIX]
    refs = [r for r in rows if r.row.kind == REFERENCE]
    levels = sorted({u for r in rows for u in r.levels})
    loads = f"{_and(str(u) for u in levels)} users"
    parts: list[str] = []
    if default is None:
        parts.append("no default `def` cell in this run")
    elif default.clean:
        parts.append(
            f"in this run {_the(default.row.label)} did not stall at any load ({loads}): the "
            "failure was not reproduced, so these numbers do not show that a fix is needed"
        )
    else:
        parts.append(f"{_the(default.row.label)}: {default.where()}")
    clean = _rank([r for r in fixes if r.clean])
    base = (
        f"{rate(default.rps)}"
        if default is not None and not math.isnan(default.rps)
        else "no throughput"
    )
    if clean:
        listed = ", ".join(f"{r.row.label} {rate(r.rps)}" for r in clean)
        head = (
            f"the fix that never stalled at any load: {listed}"
            if len(clean) == 1
            else f"the {len(clean)} fixes that never stalled at any load, fastest first at "
            f"{at} users: {listed}"
        )
        if len(clean) == 1:
            head += f" at {at} users"
        parts.append(f"{head} (the default: {base})")
    elif fixes:
        parts.append(f"none of the {len(fixes)} fixes avoided every stall")
    still = [r for r in fixes if not r.clean]
    if still:
        parts.append(
            "still stalling or answering errors: "
            + "; ".join(f"{r.row.label} ({r.where()})" for r in still)
        )
    for r in refs:
        state = "never stalled" if r.clean else r.where()
        parts.append(f"{r.row.label}: {rate(r.rps)} at {at} users, {state}")
    text = "; ".join(parts)
    return f"`{scenario}`: {text[0].lower()}{text[1:]}."
