"""Verdicts: which handler style wins each scenario, decided with a stated noise threshold."""

import math
from dataclasses import dataclass, field

import pandas as pd

from analysis.rules import RuleCheck, rules_for
from analysis.styles import label, ordered
from analysis.transform import (
    at_users,
    compared_users,
    ratio_with_spread,
    require_columns,
    safe_ratio,
)

# MEASURED.md: /hello varied 5-10% within a batch and 5-10% between batches; CPU-bound runs are
# as jittery. I/O-bound runs varied 1-5%, so 10% leaves them a 2x margin.
DEFAULT_NOISE = 0.10
NOISE: dict[str, float] = {"hello": 0.15, "cpu": 0.15}

Ratio = tuple[float, float, float]


def noise_threshold(scenario: str, override: float | None = None) -> float:
    """Relative difference below which two styles count as equal in `scenario`."""
    if override is not None:
        return override
    return NOISE.get(scenario, DEFAULT_NOISE)


def is_clear(ratio: Ratio, threshold: float) -> bool:
    """A ratio (median, lo, hi) shows a real lead: median beyond the threshold, spreads apart."""
    mid, lo, _ = ratio
    if math.isnan(mid) or math.isnan(lo):
        return False
    return mid >= 1 + threshold and lo > 1


@dataclass(frozen=True)
class Verdict:
    """The outcome of one scenario at its highest load where styles can be compared."""

    scenario: str
    threshold: float
    users: int | None = None
    leader: str | None = None
    runner_up: str | None = None
    clear: bool = False
    # Styles within the noise of the leader share the win (e.g. `async` and `blocking` on /hello,
    # where they run the same code).
    tied: tuple[str, ...] = field(default=())
    rps_ratio: Ratio | None = None
    p99_ratio: Ratio | None = None
    text: str = "not enough valid cells to compare two styles"
    checks: tuple[RuleCheck, ...] = field(default=())

    @property
    def winners(self) -> tuple[str, ...]:
        """The leader and the styles tied with it, when they clearly beat the rest; else ()."""
        return self.tied if self.clear else ()


def compute_verdict(agg: pd.DataFrame, scenario: str, threshold: float) -> Verdict:
    """Compare the two best styles by median throughput at the highest comparable load."""
    require_columns(agg, ["scenario", "style", "users", "rps", "rps_lo", "rps_hi"], "aggregate")
    users = compared_users(agg, scenario)
    if users is None:
        return Verdict(scenario=scenario, threshold=threshold)
    rows = at_users(agg, scenario, users)
    ranked = [str(s) for s in rows.sort_values("rps", ascending=False, kind="stable").index]
    leader = ranked[0]
    tied = [
        s
        for s in ranked
        if not is_clear(ratio_with_spread(rows.loc[leader], rows.loc[s], "rps"), threshold)
    ]
    rest = [s for s in ranked if s not in tied]
    clear = bool(rest)
    # Against the best style that is clearly behind; with none, against the second best.
    runner_up = rest[0] if rest else ranked[1]
    rps = ratio_with_spread(rows.loc[leader], rows.loc[runner_up], "rps")
    # The runner-up's p99 over the leader's: above 1 means the leader also has the shorter tail.
    p99 = ratio_with_spread(rows.loc[runner_up], rows.loc[leader], "p99_ms")
    text = _text(leader, tuple(ordered(tied)), runner_up, rps, p99, clear, threshold)
    absent = ordered(set(agg.loc[agg["scenario"] == scenario, "style"]) - set(rows.index))
    if absent:
        # Judged without them: say so rather than let a missing style look beaten.
        text += f" ({', '.join(f'`{s}`' for s in absent)}: no valid cell at {users} users)"
    return Verdict(
        scenario=scenario,
        threshold=threshold,
        users=users,
        leader=leader,
        runner_up=runner_up,
        clear=clear,
        tied=tuple(ordered(tied)),
        rps_ratio=rps,
        p99_ratio=p99,
        text=text,
        checks=tuple(rule(rows, threshold) for rule in rules_for(scenario)),
    )


def compute_verdicts(
    agg: pd.DataFrame, scenarios: list[str], noise: float | None = None
) -> list[Verdict]:
    """One verdict per scenario, in the given order."""
    return [compute_verdict(agg, s, noise_threshold(s, noise)) for s in scenarios]


def styles_at(agg: pd.DataFrame, verdict: Verdict) -> list[str]:
    """The styles with valid numbers at a verdict's load, in canonical order."""
    if verdict.users is None:
        return []
    return ordered(at_users(agg, verdict.scenario, verdict.users).index)


def invert(ratio: Ratio) -> Ratio:
    """b/a from a/b: the median inverted, the spread's ends swapped."""
    mid, lo, hi = ratio
    return safe_ratio(1, mid), safe_ratio(1, hi), safe_ratio(1, lo)


def fmt_ratio(ratio: Ratio | None) -> str:
    """`x1.23 (1.10-1.31)`: a ratio with its min-max spread."""
    if ratio is None or math.isnan(ratio[0]):
        return "n/a"
    mid, lo, hi = ratio
    if math.isclose(lo, hi):
        return f"x{_num(mid)}"
    return f"x{_num(mid)} ({_num(lo)}-{_num(hi)})"


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"


def _text(
    leader: str,
    tied: tuple[str, ...],
    runner_up: str,
    rps: Ratio,
    p99: Ratio,
    clear: bool,
    threshold: float,
) -> str:
    others = [s for s in tied if s != leader]
    also = f" (tied within the noise with {', '.join(f'`{s}`' for s in others)})" if others else ""
    head = (
        f"`{leader}`{also} wins: {fmt_ratio(rps)} the throughput of `{runner_up}`"
        if clear
        else (
            f"no clear winner: `{leader}` leads `{runner_up}` by {fmt_ratio(rps)} in throughput, "
            f"inside the {threshold:.0%} noise threshold or the run-to-run spread"
        )
    )
    if is_clear(p99, threshold):
        tail = f"; p99 {fmt_ratio(p99)} shorter for `{leader}`"
    elif is_clear(invert(p99), threshold):
        tail = f"; but `{runner_up}` has the shorter p99 ({fmt_ratio(p99)})"
    else:
        tail = "; p99 about equal"
    return head + tail


def leader_label(verdict: Verdict) -> str:
    """The verdict table's winner cell."""
    if verdict.leader is None:
        return "n/a"
    if not verdict.clear:
        return "no clear winner"
    return " = ".join(label(s) for s in verdict.winners)
