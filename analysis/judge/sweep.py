"""The threadpool sweep: `sync` at several token counts, and how much of its gap that closes."""

import math
from dataclasses import dataclass

import pandas as pd

from analysis.fmt import ms, rate
from analysis.judge.cells import DEFAULT_ARM, FAILED, STALLED, arms, outcomes
from analysis.judge.transform import DEFAULT_TOKENS, reference_tokens, require_columns, usable

SWEPT = "sync"  # only `def` endpoints run in anyio's threadpool
# `async def` with each client it was run with; the fastest one is the fair bar for `def`.
REFERENCES = ("async", "async (aiohttp)")
SWEEP_METRICS: tuple[str, ...] = ("rps", "p99_ms")
SWEEP_GROUP: tuple[str, ...] = ("scenario", "style", "users", "threadpool_tokens")


def sweep_scenarios(summary: pd.DataFrame) -> list[str]:
    """Scenarios whose valid `sync` cells ran at more than one token count."""
    if "threadpool_tokens" not in summary:
        return []
    rows = usable(summary)
    rows = rows[rows["style"] == SWEPT]
    counts = rows.groupby("scenario")["threadpool_tokens"].nunique()
    return sorted(str(s) for s in counts[counts > 1].index)


def aggregate_sweep(summary: pd.DataFrame) -> pd.DataFrame:
    """Median and min-max of throughput and p99 per scenario x style x users x tokens."""
    require_columns(summary, [*SWEEP_GROUP, *SWEEP_METRICS], "summary")
    rows = usable(summary)
    rows = rows[rows["scenario"].isin(sweep_scenarios(summary)) & rows["threadpool_tokens"].notna()]
    named = {
        f"{m}{suffix}": (m, how)
        for m in SWEEP_METRICS
        for suffix, how in (("", "median"), ("_lo", "min"), ("_hi", "max"))
    }
    if rows.empty:
        return pd.DataFrame(columns=[*SWEEP_GROUP, *named])
    rows = rows.astype({"threadpool_tokens": int})
    out = rows.groupby(list(SWEEP_GROUP), sort=True).agg(**named).reset_index()
    return out.sort_values(list(SWEEP_GROUP), kind="stable").reset_index(drop=True)


def sweep_outcomes(summary: pd.DataFrame) -> pd.DataFrame:
    """Per scenario x style x users x tokens of the default arm, every repeat counted: how many
    ran (`repeats`), stalled and failed; the usable ones are what aggregate_sweep keeps."""
    require_columns(summary, [*SWEEP_GROUP, "status", "valid"], "summary")
    rows = summary[(arms(summary) == DEFAULT_ARM) & summary["threadpool_tokens"].notna()]
    rows = rows[rows["scenario"].isin(sweep_scenarios(summary))]
    columns = [*SWEEP_GROUP, "repeats", "stalled", "failed"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    flags = outcomes(rows)
    rows = rows.assign(
        threadpool_tokens=rows["threadpool_tokens"].astype(int),
        _stalled=(flags == STALLED).astype(int),
        _failed=(flags == FAILED).astype(int),
    )
    out = (
        rows.groupby(list(SWEEP_GROUP), sort=True)
        .agg(repeats=("scenario", "size"), stalled=("_stalled", "sum"), failed=("_failed", "sum"))
        .reset_index()
    )
    return out[columns]


def reference_row(sweep: pd.DataFrame, scenario: str, users: int) -> pd.Series | None:
    """The fastest `async def` style's row at the same users (at its reference token count)."""
    rows = sweep[
        (sweep["scenario"] == scenario)
        & (sweep["style"].isin(REFERENCES))
        & (sweep["users"] == users)
    ]
    best: pd.Series | None = None
    for _, style_rows in rows.groupby("style"):
        tokens = reference_tokens(style_rows["threadpool_tokens"])
        row = style_rows[style_rows["threadpool_tokens"] == tokens].iloc[0]
        if best is None or row["rps"] > best["rps"]:
            best = row
    return best


@dataclass(frozen=True)
class Gap:
    """At one load: `def` at the default tokens, at its best token count, and `async def`."""

    scenario: str
    users: int
    default_tokens: int
    default_rps: float
    default_p99: float
    best_tokens: int
    best_rps: float
    best_p99: float
    async_rps: float | None
    async_p99: float | None
    async_style: str = "async"

    @property
    def closed(self) -> float | None:
        """The share of `def`'s throughput gap to `async def` that more tokens closed."""
        if self.async_rps is None or self.async_rps <= self.default_rps:
            return None
        return (self.best_rps - self.default_rps) / (self.async_rps - self.default_rps)


def gaps(sweep: pd.DataFrame, scenario: str, ran: pd.DataFrame | None = None) -> list[Gap]:
    """One Gap per user level of a swept scenario, lowest load first.

    With `ran` (sweep_outcomes: every token count run, usable or not), a load whose reference
    count ran but has no usable repeat (it stalled, say) gets no Gap: another count would
    otherwise stand in for the default.
    """
    rows = sweep[(sweep["scenario"] == scenario) & (sweep["style"] == SWEPT)]
    out = []
    for users, part in rows.groupby("users", sort=True):
        if part["threadpool_tokens"].nunique() < 2:
            continue
        part = part.set_index("threadpool_tokens")
        default = reference_tokens(pd.Series(part.index))
        if ran is not None:
            planned = ran[
                (ran["scenario"] == scenario) & (ran["style"] == SWEPT) & (ran["users"] == users)
            ]["threadpool_tokens"]
            wanted = reference_tokens(planned) if not planned.empty else default
            if wanted not in part.index:
                continue
        best = int(part["rps"].idxmax())
        ref = reference_row(sweep, scenario, int(users))
        out.append(
            Gap(
                scenario=scenario,
                users=int(users),
                default_tokens=int(default or DEFAULT_TOKENS),
                default_rps=float(part.loc[default, "rps"]),
                default_p99=float(part.loc[default, "p99_ms"]),
                best_tokens=best,
                best_rps=float(part.loc[best, "rps"]),
                best_p99=float(part.loc[best, "p99_ms"]),
                async_rps=None if ref is None else float(ref["rps"]),
                async_p99=None if ref is None else float(ref["p99_ms"]),
                async_style="async" if ref is None else str(ref["style"]),
            )
        )
    return out


def gap_text(gap: Gap) -> str:
    """One sentence: what raising the tokens did for `def`, against `async def`."""
    head = (
        f"at {gap.users} users, `def` with {gap.default_tokens} tokens: {rate(gap.default_rps)} "
        f"(p99 {ms(gap.default_p99)})"
    )
    if gap.best_tokens == gap.default_tokens:
        best = "; no other token count did better"
    else:
        times = (
            f"x{gap.best_rps / gap.default_rps:.2f} the throughput"
            if gap.default_rps > 0
            else "where the default completed nothing"
        )
        best = (
            f"; best at {gap.best_tokens} tokens: {rate(gap.best_rps)} (p99 {ms(gap.best_p99)}, "
            f"{times})"
        )
    if gap.async_rps is None:
        return f"{head}{best}; no `async def` cell at this load to compare with."
    ref = (
        f"; fastest `async def` (`{gap.async_style}`): {rate(gap.async_rps)} "
        f"(p99 {ms(gap.async_p99 or math.nan)})"
    )
    closed = gap.closed
    if closed is None:
        tail = f". `def` at {gap.default_tokens} tokens is not behind `async def` here."
    elif closed >= 1:
        tail = ". More tokens close the whole gap: the default is all of it."
    else:
        tail = (
            f". The default of {gap.default_tokens} accounts for {max(closed, 0):.0%} of the gap."
        )
    return head + best + ref + tail


@dataclass(frozen=True)
class SweepTable:
    """One swept scenario as a table: `def` per users x tokens, against `async def`."""

    scenario: str
    tokens: tuple[int, ...]
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _sweep_cell(agg: pd.Series | None, out: pd.Series | None, best: bool) -> str:
    stalled = 0 if out is None else int(out["stalled"])
    failed = 0 if out is None else int(out["failed"])
    repeats = 0 if out is None else int(out["repeats"])
    if agg is None:
        if stalled:
            return f"**stalled** ({stalled} of {repeats} repeats)"
        if failed:
            return f"failed ({failed} of {repeats} repeats)"
        return "-" if out is None else "not usable (invalid or not steady)"
    text = f"{rate(float(agg['rps']))}; p99 {ms(float(agg['p99_ms']))}"
    text = f"**{text}**" if best else text
    if stalled:
        text += f"; stalled in {stalled} of {repeats} repeats"
    return text


def sweep_table(summary: pd.DataFrame, scenario: str) -> SweepTable:
    """Rows per users: `def` at each token count (the best in bold; stalled repeats named),
    the fastest `async def` at the same users, and the share of the gap more tokens closed."""
    sweep = aggregate_sweep(summary)
    outs = sweep_outcomes(summary)
    mine = sweep[(sweep["scenario"] == scenario) & (sweep["style"] == SWEPT)]
    done = outs[(outs["scenario"] == scenario) & (outs["style"] == SWEPT)]
    tokens = tuple(sorted({int(t) for t in done["threadpool_tokens"]}))
    closed = {g.users: g.closed for g in gaps(sweep, scenario, outs)}
    rows = []
    for users in sorted({int(u) for u in done["users"]}):
        at = mine[mine["users"] == users].set_index("threadpool_tokens")
        outs_at = done[done["users"] == users].set_index("threadpool_tokens")
        best = int(at["rps"].idxmax()) if not at.empty else None
        cells = [
            _sweep_cell(
                at.loc[t] if t in at.index else None,
                outs_at.loc[t] if t in outs_at.index else None,
                t == best and len(at) > 1,
            )
            for t in tokens
        ]
        ref = reference_row(sweep, scenario, users)
        ref_text = (
            "-"
            if ref is None
            else f"`{ref['style']}`: {rate(float(ref['rps']))}; p99 {ms(float(ref['p99_ms']))}"
        )
        share = closed.get(users)
        rows.append(
            (
                str(users),
                *cells,
                ref_text,
                "n/a" if share is None else f"{max(share, 0):.0%}",
            )
        )
    header = (
        "users",
        *(f"{t} tokens" + (" (default)" if t == DEFAULT_TOKENS else "") for t in tokens),
        "fastest `async def`",
        "gap closed by more tokens",
    )
    return SweepTable(scenario, tokens, header, tuple(rows))
