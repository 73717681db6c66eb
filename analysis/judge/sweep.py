"""The threadpool sweep: `sync` at several token counts, and how much of its gap that closes."""

from dataclasses import dataclass

import pandas as pd

from analysis.fmt import rate
from analysis.judge.cells import FAILED, STALLED, arms, outcomes
from analysis.judge.repeats import over_repeats
from analysis.judge.samples import LATENCY_PERCENTILES, tail, too_small
from analysis.judge.transform import (
    DEFAULT_TOKENS,
    reference_tokens,
    require_columns,
    sample_counts,
    usable,
)
from analysis.vocabulary import ASYNC_REFERENCES, DEFAULT_ARM, THREADED

# Only `def` endpoints run in anyio's threadpool: the style the sweep varies.
SWEPT = THREADED
# `async def` with each client it was run with; the fastest one is the fair bar for `def`.
REFERENCES = ASYNC_REFERENCES
SWEEP_METRICS: tuple[str, ...] = ("rps", *(f"p{q}_ms" for q in LATENCY_PERCENTILES))
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
    """The repeat statistic (analysis.judge.repeats) of throughput and the latency percentiles
    per scenario x style x users x tokens, with `n` (the fewest latency samples of any repeat)
    and `censored_min_ms`, so each row's tail reads as the verdicts' tables read theirs."""
    require_columns(summary, [*SWEEP_GROUP, "rps", "p99_ms"], "summary")
    rows = usable(summary)
    rows = rows[rows["scenario"].isin(sweep_scenarios(summary)) & rows["threadpool_tokens"].notna()]
    rows = rows.astype({"threadpool_tokens": int}).assign(_n=sample_counts(rows))
    extra = {"n": ("_n", "min")}
    if "censored_min_ms" in rows:
        extra["censored_min_ms"] = ("censored_min_ms", "min")
    return over_repeats(rows, SWEEP_GROUP, SWEEP_METRICS, extra)


def tail_of(row: pd.Series | None) -> str:
    """A sweep row's tail: `p99 128 ms`, or the highest percentile its repeats have, named."""
    if row is None:
        return "n/a"
    t = tail(row)
    return t.text() if t else too_small(row.get("n"))


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
    # The tails as the tables print them (`p99 128 ms`, `p95 (n=940) 270 ms`: samples.tail).
    default_tail: str
    best_tokens: int
    best_rps: float
    best_tail: str
    async_rps: float | None
    async_tail: str | None
    async_style: str = ASYNC_REFERENCES[0]

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
                default_tail=tail_of(part.loc[default]),
                best_tokens=best,
                best_rps=float(part.loc[best, "rps"]),
                best_tail=tail_of(part.loc[best]),
                async_rps=None if ref is None else float(ref["rps"]),
                async_tail=None if ref is None else tail_of(ref),
                async_style=ASYNC_REFERENCES[0] if ref is None else str(ref["style"]),
            )
        )
    return out


def gap_text(gap: Gap) -> str:
    """One sentence: what raising the tokens did for `def`, against `async def`."""
    head = (
        f"at {gap.users} users, `def` with {gap.default_tokens} tokens: {rate(gap.default_rps)} "
        f"({gap.default_tail})"
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
            f"; best at {gap.best_tokens} tokens: {rate(gap.best_rps)} ({gap.best_tail}, {times})"
        )
    if gap.async_rps is None:
        return f"{head}{best}; no `async def` cell at this load to compare with."
    ref = (
        f"; fastest `async def` (`{gap.async_style}`): {rate(gap.async_rps)} "
        f"({gap.async_tail or 'n/a'})"
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
    text = f"{rate(float(agg['rps']))}; {tail_of(agg)}"
    text = f"**{text}**" if best else text
    if stalled:
        text += f"; stalled in {stalled} of {repeats} repeats"
    return text


def sweep_table(sweep: pd.DataFrame, outs: pd.DataFrame, scenario: str) -> SweepTable:
    """Rows per users: `def` at each token count (the best in bold; stalled repeats named),
    the fastest `async def` at the same users, and the share of the gap more tokens closed.

    `sweep`: aggregate_sweep of the run; `outs`: sweep_outcomes of it (every repeat counted).
    """
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
            "-" if ref is None else f"`{ref['style']}`: {rate(float(ref['rps']))}; {tail_of(ref)}"
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
