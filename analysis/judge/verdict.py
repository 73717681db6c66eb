"""Verdicts: which handler style wins each scenario, against the noise the run itself measured.

A lead is clear only when the ratio's repeat interval (lo = min(a)/max(b), hi = max(a)/min(b))
excludes parity (lo > 1) and the median ratio is at least 1 + the scenario's noise. Both styles
need >= 2 repeats; with one there is no interval and no verdict. Stalled cells are never a
ratio: the verdict compares the remaining styles and names the stalled one.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from analysis.judge.cells import (
    THROUGHPUT,
    contract_metric,
    higher_is_better,
    metric_name,
)
from analysis.judge.noise import Noise, scenario_noise
from analysis.judge.repeats import Ratio, safe_ratio
from analysis.judge.rules import RuleCheck, Scene, rules_for
from analysis.judge.samples import common_tail, lower_bound, too_small
from analysis.judge.transform import (
    Stall,
    aggregate,
    aggregate_rows,
    at_users,
    compared_users,
    counted,
    ratio_with_spread,
    require_columns,
    scenarios,
    stalls,
)
from analysis.vocabulary import label, ordered

MIN_REPEATS = 2
ONE_REPEAT = "one repeat: no interval"


def is_clear(ratio: Ratio, threshold: float) -> bool:
    """A ratio (median, lo, hi) shows a real lead: interval above parity, median beyond noise."""
    mid, lo, _ = ratio
    if math.isnan(mid) or math.isnan(lo):
        return False
    return mid >= 1 + threshold and lo > 1


def advantage(rows: pd.DataFrame, a: str, b: str, metric: str) -> Ratio:
    """How much better style a is than b in `metric` (> 1 favours a), with its repeat interval."""
    if higher_is_better(metric):
        return ratio_with_spread(rows.loc[a], rows.loc[b], metric)
    return ratio_with_spread(rows.loc[b], rows.loc[a], metric)


def enough_repeats(rows: pd.DataFrame, *styles: str) -> bool:
    """Whether every given style has the repeats an interval needs."""
    if "repeats" not in rows:
        return False
    return all(int(rows.loc[s, "repeats"]) >= MIN_REPEATS for s in styles)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one scenario at its highest load where styles can be compared."""

    scenario: str
    # The noise threshold the verdict used (see `noise` for where it came from).
    threshold: float
    metric: str = THROUGHPUT
    users: int | None = None
    leader: str | None = None
    runner_up: str | None = None
    clear: bool = False
    # Styles within the noise of the leader share the win (e.g. `async` and `blocking` on /hello,
    # where they run the same code).
    tied: tuple[str, ...] = field(default=())
    # The leader's advantage in the verdict metric (> 1 favours it), with its repeat interval.
    ratio: Ratio | None = None
    # The runner-up's tail latency over the leader's, at the percentile `tail` names.
    tail_ratio: Ratio | None = None
    tail: str = "p99"
    repeats: int = 0
    stalls: tuple[str, ...] = field(default=())
    noise: str = ""
    text: str = "not enough valid cells to compare two styles"
    checks: tuple[RuleCheck, ...] = field(default=())

    @property
    def winners(self) -> tuple[str, ...]:
        """The leader and the styles tied with it, when they clearly beat the rest; else ()."""
        return self.tied if self.clear else ()

    @property
    def lower_is_better(self) -> bool:
        """Whether the verdict metric is a cost (CPU per request) rather than a rate."""
        return not higher_is_better(self.metric)


def compute_verdict(
    agg: pd.DataFrame,
    scenario: str,
    noise: float | Noise,
    stalled: Sequence[Stall] = (),
    metric: str | None = None,
) -> Verdict:
    """Compare the styles by the verdict metric at the highest load two of them were counted."""
    metric = metric or contract_metric(scenario)
    threshold = noise.value if isinstance(noise, Noise) else float(noise)
    noise_text = noise.text() if isinstance(noise, Noise) else f"{threshold:.0%}"
    require_columns(agg, ["scenario", "style", "users", metric, f"{metric}_lo", f"{metric}_hi"])
    mine = [s for s in stalled if s.scenario == scenario]
    users = compared_users(agg, scenario, metric=metric)
    base = {"scenario": scenario, "threshold": threshold, "metric": metric, "noise": noise_text}
    if users is None:
        text = "not enough valid cells to compare two styles"
        notes = tuple(s.text() for s in mine)
        if notes:
            text += "; " + "; ".join(notes)
        return Verdict(**base, stalls=notes, text=text)  # type: ignore[arg-type]
    rows = at_users(agg, scenario, users)
    rows = rows[rows[metric].notna()]
    higher = higher_is_better(metric)
    ranked = [str(s) for s in rows.sort_values(metric, ascending=not higher, kind="stable").index]
    # A style with one repeat has no interval: it is set aside and named, never "tied".
    single = [s for s in ranked if not enough_repeats(rows, s)]
    with_interval = [s for s in ranked if s not in single]
    one_repeat = len(with_interval) < 2
    pool = ranked if one_repeat else with_interval
    leader = pool[0]
    repeats = int(rows["repeats"].min())

    def beats(a: str, b: str) -> bool:
        return enough_repeats(rows, a, b) and is_clear(advantage(rows, a, b, metric), threshold)

    tied = [s for s in pool if not beats(leader, s)]
    rest = [s for s in pool if s not in tied]
    clear = bool(rest) and not one_repeat
    # Against the best style that is clearly behind; with none, against the second best.
    runner_up = rest[0] if rest else pool[1]
    ratio = advantage(rows, leader, runner_up, metric)
    q, n = common_tail(rows.loc[leader], rows.loc[runner_up])
    tail_ratio = (
        None if q is None else ratio_with_spread(rows.loc[runner_up], rows.loc[leader], f"p{q}_ms")
    )
    tail = too_small(n) if q is None else ("p99" if q == 99 else f"p{q} (n={n:,})")
    bound = q is not None and any(
        lower_bound(float(rows.loc[s, f"p{q}_ms"]), rows.loc[s].get("censored_min_ms"))
        for s in (leader, runner_up)
    )
    text = _text(
        leader,
        tuple(ordered(tied)),
        runner_up,
        ratio,
        tail_ratio,
        tail,
        clear,
        threshold,
        metric,
        one_repeat,
        bound,
    )
    if single and not one_repeat:
        text += (
            f" ({', '.join(f'`{s}`' for s in ordered(single))}: {ONE_REPEAT} at {users} users, "
            "not judged)"
        )
    notes = tuple(s.text() for s in mine if s.users >= users)
    if notes:
        text += "; " + "; ".join(notes)
    stalled_here = {s.style for s in mine if s.users == users}
    absent = ordered(
        set(agg.loc[agg["scenario"] == scenario, "style"]) - set(rows.index) - stalled_here
    )
    if absent:
        # Judged without them: say so rather than let a missing style look beaten.
        text += f" ({', '.join(f'`{s}`' for s in absent)}: no counted cell at {users} users)"
    scene = Scene(scenario, users, agg[agg["scenario"] == scenario], threshold, tuple(mine), metric)
    return Verdict(
        **base,  # type: ignore[arg-type]
        users=users,
        leader=leader,
        runner_up=runner_up,
        clear=clear,
        tied=tuple(ordered(tied)) if not one_repeat else (),
        ratio=ratio,
        tail_ratio=tail_ratio,
        tail=tail,
        repeats=repeats,
        stalls=notes,
        text=text,
        checks=tuple(rule(scene) for rule in rules_for(scenario)),
    )


@dataclass(frozen=True)
class Verdicts:
    """Every scenario's verdict, and what they were decided from: the aggregates, the metric
    each scenario is judged by, its noise and the stalls."""

    # Usable default-arm cells, aggregated over repeats: the charts' and tables' numbers.
    agg: pd.DataFrame
    # The cells the verdicts count (usable, plus load-side-invalid ones where the metric allows).
    counted: pd.DataFrame
    metrics: dict[str, str]
    metric_notes: dict[str, str]
    noises: dict[str, Noise]
    stalls: list[Stall]
    verdicts: list[Verdict]


def verdict_metrics(summary: pd.DataFrame, names: Sequence[str]) -> tuple[dict, dict]:
    """Per scenario the metric it is judged by, and a note where the contract's is not recorded."""
    metrics: dict[str, str] = {}
    notes: dict[str, str] = {}
    for s in names:
        wanted = contract_metric(s)
        rows = summary[summary["scenario"] == s]
        if wanted != THROUGHPUT and (wanted not in rows or rows[wanted].isna().all()):
            metrics[s] = THROUGHPUT
            notes[s] = f"`{wanted}` not recorded: judged by throughput instead"
        else:
            metrics[s] = wanted
    return metrics, notes


def decide_verdicts(summary: pd.DataFrame, noise: float | None = None) -> Verdicts:
    """Aggregate a run's closed-loop summary and decide every scenario's verdict (`noise`, one
    threshold for every scenario, overrides the noise each measures from its repeats)."""
    names = scenarios(summary)
    metrics, notes = verdict_metrics(summary, names)
    agg = aggregate(summary)
    counted_agg = aggregate_rows(counted(summary, metrics))
    noises = {s: scenario_noise(counted_agg, s, metrics[s], noise) for s in names}
    stalled = stalls(summary)
    verdicts = [compute_verdict(counted_agg, s, noises[s], stalled, metrics[s]) for s in names]
    return Verdicts(agg, counted_agg, metrics, notes, noises, stalled, verdicts)


def styles_at(agg: pd.DataFrame, verdict: Verdict) -> list[str]:
    """The styles with counted numbers at a verdict's load, in canonical order."""
    if verdict.users is None:
        return []
    return ordered(at_users(agg, verdict.scenario, verdict.users).index)


def invert(ratio: Ratio) -> Ratio:
    """b/a from a/b: the median inverted, the spread's ends swapped."""
    mid, lo, hi = ratio
    return safe_ratio(1, mid), safe_ratio(1, hi), safe_ratio(1, lo)


def fmt_ratio(ratio: Ratio | None) -> str:
    """`x1.23 (1.10-1.31)`: a ratio with its repeat interval; never `x inf`."""
    if ratio is None or math.isnan(ratio[0]):
        return "n/a"
    mid, lo, hi = ratio
    if math.isinf(mid):
        return "n/a (the other completed nothing)"
    if math.isclose(lo, hi):
        return f"x{_num(mid)}"
    return f"x{_num(mid)} ({_num(lo)}-{_num(hi)})"


def _num(x: float) -> str:
    if math.isinf(x):
        return "∞"
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"


def _text(
    leader: str,
    tied: tuple[str, ...],
    runner_up: str,
    ratio: Ratio,
    tail_ratio: Ratio | None,
    tail: str,
    clear: bool,
    threshold: float,
    metric: str,
    one_repeat: bool,
    bound: bool,
) -> str:
    what = metric_name(metric)
    others = [s for s in tied if s != leader]
    also = f" (tied within the noise with {', '.join(f'`{s}`' for s in others)})" if others else ""
    mid, lo, _ = ratio
    interval = fmt_ratio(ratio)
    if one_repeat:
        head = (
            f"no clear winner: {ONE_REPEAT} (`{leader}` leads `{runner_up}` by {interval} in "
            f"{what})"
        )
    elif clear:
        lead = (
            f"{interval} the {what} of `{runner_up}`"
            if higher_is_better(metric)
            else f"`{runner_up}` needs {interval} the {what} of `{leader}`"
        )
        head = f"`{leader}`{also} wins: {lead} (interval above parity; noise {threshold:.0%})"
    else:
        why = (
            "the repeat interval includes parity"
            if math.isnan(lo) or lo <= 1
            else f"inside the {threshold:.0%} noise"
        )
        head = f"no clear winner: `{leader}` leads `{runner_up}` by {interval} in {what} ({why})"
    if tail_ratio is None:
        return f"{head}; tail latency not compared ({tail})"
    lb = " (a lower bound is involved: censored requests)" if bound else ""
    if one_repeat:
        return f"{head}; {tail} {fmt_ratio(tail_ratio)} (runner-up / leader){lb}"
    if is_clear(tail_ratio, threshold):
        return f"{head}; {tail} {fmt_ratio(tail_ratio)} shorter for `{leader}`{lb}"
    if is_clear(invert(tail_ratio), threshold):
        return f"{head}; but `{runner_up}` has the shorter {tail} ({fmt_ratio(tail_ratio)}){lb}"
    return f"{head}; {tail} about equal{lb}"


def leader_label(verdict: Verdict) -> str:
    """The verdict table's winner cell."""
    if verdict.leader is None:
        return "n/a"
    if not verdict.clear:
        return "no clear winner"
    return " = ".join(label(s) for s in verdict.winners)
