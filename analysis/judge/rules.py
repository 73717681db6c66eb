"""The FastAPI docs' rules each scenario tests, and how the data confirms or contradicts them.

Every check tests each part of the claim it prints, or says which part it did not test. A check
runs at the verdict's load; when a style it needs is not counted there (stalled, invalid, not
steady) it moves to the highest load where it is, and says which load and why.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from analysis.judge.cells import THROUGHPUT, higher_is_better, metric_name
from analysis.judge.transform import Stall, at_users, ratio_with_spread
from analysis.judge.why import CPU_BOUND_PCT, LOOP_BLOCKED_MS
from analysis.vocabulary import ASYNC, ASYNC_REFERENCES, BLOCKING, SYNC
from contract import min_samples

CONFIRMS = "confirms"
PARTLY = "partly confirms"
CONTRADICTS = "contradicts"
NOISE = "inside the noise"
MIXED = "depends on the library"
NOT_MEASURED = "not measured"
ONE_REPEAT = "one repeat: no interval"

ASYNC_STYLES: tuple[str, ...] = ASYNC_REFERENCES
# "Throughput collapses to about 1 / latency": a blocked loop serves one upstream call at a
# time, so `blocking` should do about 1000 / upstream_latency_ms requests/s. Within +-35% counts
# as "about": the handler's own time, the client's connection setup and the repeat spread on a
# 2-core machine move it by tens of percent, while a collapse is an order of magnitude.
BLOCKING_RATE_TOLERANCE = 0.35


@dataclass(frozen=True)
class RuleCheck:
    """One docs rule, what the data says about it and the numbers behind that."""

    rule: str
    outcome: str
    detail: str


@dataclass(frozen=True)
class Scene:
    """One scenario as the rules see it: its counted aggregate at every load, the verdict's load,
    the noise threshold, the stalls and the metric it is judged by."""

    scenario: str
    users: int
    agg: pd.DataFrame
    noise: float
    stalls: tuple[Stall, ...] = field(default=())
    metric: str = THROUGHPUT

    def rows(self, users: int | None = None) -> pd.DataFrame:
        """The counted rows at one load (default: the verdict's), indexed by style."""
        return at_users(self.agg, self.scenario, self.users if users is None else users)

    def pick(
        self, required: Iterable[str], any_of: Iterable[str] = (), others: int = 0
    ) -> tuple[int | None, pd.DataFrame, str]:
        """The load to test at: the verdict's when every needed style is counted there, else the
        highest load where they are. Returns (users, rows, a note saying why it moved)."""
        required, any_of = tuple(required), tuple(any_of)

        def fits(rows: pd.DataFrame, interval: bool = True) -> bool:
            # With `interval`, only styles with the 2 repeats an interval needs count.
            if interval and "repeats" in rows:
                rows = rows[rows["repeats"] >= 2]
            present = set(rows.index)
            if not set(required) <= present:
                return False
            if any_of and not set(any_of) & present:
                return False
            return len(present - set(required)) >= others

        here = self.rows()
        if fits(here):
            return self.users, here, ""
        loads = sorted(
            {int(u) for u in self.agg.loc[self.agg["scenario"] == self.scenario, "users"]},
            reverse=True,
        )
        why = []
        for style in required:
            stall = next(
                (s for s in self.stalls if s.style == style and s.users == self.users), None
            )
            if stall:
                why.append(stall.text())
            elif style not in here.index:
                why.append(
                    f"`{style}` has no counted cell at {self.users} users (invalid, not steady "
                    "or failed)"
                )
            elif "repeats" in here and int(here.loc[style, "repeats"]) < 2:
                why.append(f"`{style}` has one repeat at {self.users} users (no interval)")
        if not why:
            why.append(f"too few styles with 2 repeats at {self.users} users")
        for users in loads:
            if users >= self.users:
                continue
            rows = self.rows(users)
            if fits(rows):
                return users, rows, f"{'; '.join(why)}; tested at {users} users instead"
        if fits(here, interval=False):
            # Nowhere with an interval: the verdict's load, where the check says "one repeat".
            return self.users, here, ""
        return None, here, f"{'; '.join(why)}; no load where it was counted"


# One rule: a scene in, a check out.
Rule = Callable[[Scene], RuleCheck]


def _lead(rows: pd.DataFrame, a: str, b: str, metric: str, noise: float) -> tuple[str, float]:
    """Which of a and b is better in `metric` beyond the noise: `a`, `b`, `noise` or `one repeat`.

    The returned ratio is a's advantage (> 1 favours a; for a cost, b's value over a's).
    """
    if higher_is_better(metric):
        mid, lo, hi = ratio_with_spread(rows.loc[a], rows.loc[b], metric)
    else:
        mid, lo, hi = ratio_with_spread(rows.loc[b], rows.loc[a], metric)
    if "repeats" in rows and min(int(rows.loc[a, "repeats"]), int(rows.loc[b, "repeats"])) < 2:
        return "one repeat", mid
    if mid >= 1 + noise and lo > 1:
        return "a", mid
    if not math.isnan(mid) and mid <= 1 / (1 + noise) and hi < 1:
        return "b", mid
    return "noise", mid


def _x(ratio: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    if math.isinf(ratio):
        return "n/a (the other completed nothing)"
    return f"{ratio:.2f}"


def _rate(x: float) -> str:
    return f"{x:,.0f}/s" if x >= 10 else f"{x:.1f}/s"


def _ms(x: float) -> str:
    return f"{x:,.0f} ms" if x >= 10 else f"{x:.1f} ms"


def _at(users: int | None, note: str) -> str:
    # Where the check moved from the verdict's load, and why (a stall is named with its evidence).
    return f" [{note}]" if note and users is not None else ""


def _value(rows: pd.DataFrame, style: str, column: str) -> float:
    if column not in rows:
        return math.nan
    value = rows.loc[style, column]
    return math.nan if pd.isna(value) else float(value)


def trivial_endpoint(scene: Scene) -> RuleCheck:
    """`async def` without I/O skips the threadpool hop, so it should beat `def`."""
    rule = (
        "No I/O in the endpoint: `async def` runs on the event loop and skips the threadpool "
        "hop, so it should be faster than `def`"
    )
    users, rows, note = scene.pick((SYNC, ASYNC))
    if users is None:
        return RuleCheck(rule, NOT_MEASURED, f"needs `sync` and `async`: {note}")
    metric = scene.metric
    who, ratio = _lead(rows, ASYNC, SYNC, metric, scene.noise)
    outcome = {"a": CONFIRMS, "b": CONTRADICTS, "noise": NOISE, "one repeat": ONE_REPEAT}[who]
    if higher_is_better(metric):
        detail = f"faster: `async` {metric_name(metric)} x{_x(ratio)} of `sync` at {users} users"
    else:
        detail = (
            f"faster: `sync` needs x{_x(ratio)} the {metric_name(metric)} of `async` at {users} "
            "users (tested as the cost per request because the load generator saturates before "
            "the server here: throughput not tested)"
        )
    tokens = _value(rows, ASYNC, "threadpool_peak_in_use")
    if math.isnan(tokens):
        detail += "; not tested: 'skips the threadpool hop' (threadpool gauges not recorded)"
    else:
        skips = tokens == 0
        detail += (
            f"; skips the threadpool: {'yes' if skips else 'no'}, `async` used at most "
            f"{tokens:g} threadpool tokens"
        )
        if outcome == CONFIRMS and not skips:
            outcome = PARTLY
    return RuleCheck(rule, outcome, detail + _at(users, note))


def async_library(scene: Scene) -> RuleCheck:
    """An `await`-able I/O library in `async def` should beat `def` + threadpool."""
    rule = "I/O through a library that supports `await`: declare the endpoint `async def`"
    users, rows, note = scene.pick((SYNC,), any_of=ASYNC_STYLES)
    if users is None:
        return RuleCheck(rule, NOT_MEASURED, f"needs `sync` and an async style: {note}")
    outcomes, details = [], []
    for style in [s for s in ASYNC_STYLES if s in rows.index]:
        who, ratio = _lead(rows, style, SYNC, "rps", scene.noise)
        outcomes.append(
            {"a": CONFIRMS, "b": CONTRADICTS, "noise": NOISE, "one repeat": ONE_REPEAT}[who]
        )
        details.append(f"`{style}` throughput x{_x(ratio)} of `sync` ({outcomes[-1]})")
    outcome = outcomes[0] if len(set(outcomes)) == 1 else MIXED
    return RuleCheck(rule, outcome, f"at {users} users: " + "; ".join(details) + _at(users, note))


def blocking_library(scene: Scene) -> RuleCheck:
    """A blocking call inside `async def` serialises the server: far below, near 1 / latency."""
    rule = (
        "A blocking library inside `async def` blocks the event loop: "
        "throughput collapses to about 1 / latency"
    )
    users, rows, note = scene.pick((BLOCKING,), others=1)
    if users is None:
        return RuleCheck(rule, NOT_MEASURED, f"needs `blocking` and another style: {note}")
    others = [s for s in rows.index if s != BLOCKING]
    best = str(rows.loc[others, "rps"].idxmax())
    who, ratio = _lead(rows, best, BLOCKING, "rps", scene.noise)
    rps = float(rows.loc[BLOCKING, "rps"])
    detail = (
        f"at {users} users `blocking` {_rate(rps)} vs `{best}` {_rate(rows.loc[best, 'rps'])} "
        f"(x{_x(ratio)})"
    )
    if who == "one repeat":
        return RuleCheck(rule, ONE_REPEAT, detail + _at(users, note))
    far_below = who == "a"
    detail += (
        ": far below, beyond the noise"
        if far_below
        else f": not far below (inside the {scene.noise:.0%} noise or the repeat interval)"
        if who == "noise"
        else ": faster"
    )
    held: list[bool] = []
    lag = _value(rows, BLOCKING, "loop_lag_max_ms")
    if math.isnan(lag):
        detail += "; not tested: 'blocks the event loop' (loop lag not recorded)"
    else:
        blocked = lag >= LOOP_BLOCKED_MS
        held.append(blocked)
        detail += (
            f"; blocks the loop: {'yes' if blocked else 'no'}, max loop lag {_ms(lag)} "
            f"(blocked >= {LOOP_BLOCKED_MS:g} ms)"
        )
    latency_ms = _value(rows, BLOCKING, "upstream_latency_ms")
    if math.isnan(latency_ms) or latency_ms <= 0:
        detail += (
            "; not tested: 'about 1 / latency' (no upstream latency configured in this scenario)"
        )
    else:
        expected = 1000 / latency_ms
        near = abs(rps / expected - 1) <= BLOCKING_RATE_TOLERANCE
        held.append(near)
        detail += (
            f"; 1 / latency = {_rate(expected)} ({latency_ms:g} ms): `blocking` at "
            f"x{rps / expected:.2f} of it, {'within' if near else 'outside'} "
            f"±{BLOCKING_RATE_TOLERANCE:.0%}"
        )
    if far_below:
        outcome = CONFIRMS if all(held) else PARTLY
    else:
        outcome = NOISE if who == "noise" else CONTRADICTS
    return RuleCheck(rule, outcome, detail + _at(users, note))


def aiosqlite_thread(scene: Scene) -> RuleCheck:
    """aiosqlite hands each query to a thread, so `async def` need not be faster."""
    rule = (
        "aiosqlite runs queries on a thread per connection: measure before assuming "
        "`async def` is faster"
    )
    users, rows, note = scene.pick((SYNC, ASYNC))
    if users is None:
        return RuleCheck(rule, NOT_MEASURED, f"needs `sync` and `async`: {note}")
    who, ratio = _lead(rows, ASYNC, SYNC, "rps", scene.noise)
    if who == "one repeat":
        outcome, text = ONE_REPEAT, "no interval"
    elif who == "a":
        outcome, text = CONTRADICTS, "`async` is faster here"
    else:
        outcome, text = CONFIRMS, "`async` is not faster"
    detail = (
        f"{text}: throughput x{_x(ratio)} of `sync` at {users} users; not tested: that "
        "aiosqlite uses a thread per connection (how the library works, not measured here)"
    )
    return RuleCheck(rule, outcome, detail + _at(users, note))


def cpu_bound(scene: Scene) -> RuleCheck:
    """CPU-bound work: one worker runs one piece of Python at a time in either style."""
    rule = (
        "CPU-bound work gains nothing from `async def`: one worker runs one piece of Python at "
        "a time either way (and `async def` also stalls the loop)"
    )
    users, rows, note = scene.pick((SYNC, ASYNC))
    if users is None:
        return RuleCheck(rule, NOT_MEASURED, f"needs `sync` and `async`: {note}")
    who, ratio = _lead(rows, ASYNC, SYNC, "rps", scene.noise)
    if who == "one repeat":
        return RuleCheck(rule, ONE_REPEAT, f"`async` throughput x{_x(ratio)} of `sync`")
    gains_nothing = who != "a"
    parts = [
        f"gains nothing: {'yes' if gains_nothing else 'no'}, `async` throughput x{_x(ratio)} "
        f"of `sync` at {users} users"
    ]
    held, untested = [gains_nothing], []
    cpu = [_value(rows, s, "server_cpu_pct") for s in (SYNC, ASYNC)]
    if any(math.isnan(c) for c in cpu):
        untested.append("one piece of Python at a time (server CPU not recorded)")
    else:
        at_one_core = all(c >= CPU_BOUND_PCT for c in cpu)
        held.append(at_one_core)
        parts.append(
            f"one core at a time: {'yes' if at_one_core else 'no'}, server CPU `sync` "
            f"{cpu[0]:.0f}%, `async` {cpu[1]:.0f}% of one core (CPU-bound >= {CPU_BOUND_PCT:g}%)"
        )
    lag = _value(rows, ASYNC, "loop_lag_max_ms")
    if math.isnan(lag):
        untested.append("`async def` stalls the loop (loop lag not recorded)")
    else:
        stalls_loop = lag >= LOOP_BLOCKED_MS
        held.append(stalls_loop)
        parts.append(
            f"stalls the loop: {'yes' if stalls_loop else 'no'}, `async` max loop lag "
            f"{_ms(lag)} (blocked >= {LOOP_BLOCKED_MS:g} ms)"
        )
    if untested:
        parts.append("not tested: " + "; ".join(untested))
    outcome = CONTRADICTS if not gains_nothing else (CONFIRMS if all(held) else PARTLY)
    return RuleCheck(rule, outcome, "; ".join(parts) + _at(users, note))


def stalls_everyone(scene: Scene) -> RuleCheck:
    """One blocking call in `async def` delays even the trivial probe requests."""
    rule = "One blocking call in `async def` stalls every request on the worker, even trivial ones"
    users, rows, note = scene.pick((BLOCKING,), others=1)
    if users is None or "probe_max_ms" not in rows or rows["probe_max_ms"].isna().all():
        where = f": {note}" if note else ""
        return RuleCheck(
            rule, NOT_MEASURED, f"needs the probe of `blocking` and another style{where}"
        )
    others = [s for s in rows.index if s != BLOCKING and pd.notna(rows.loc[s, "probe_max_ms"])]
    if not others:
        return RuleCheck(rule, NOT_MEASURED, "needs the probe of another style")
    counts = rows.loc[[BLOCKING, *others], "probe_n"] if "probe_n" in rows else pd.Series()
    n = None if counts.dropna().empty else int(counts.dropna().min())
    if rows.loc[[BLOCKING, *others], "probe_p99_ms"].notna().all():
        metric, what, why = "probe_p99_ms", "probe p99", ""
    else:
        metric, what = "probe_max_ms", "probe max"
        count = "n not recorded" if n is None else f"n={n:,} probe requests"
        why = f"; probe p99 not used: n too small ({count}, p99 needs {min_samples(99):,})"
    best = str(rows.loc[others, metric].idxmin())
    # Higher latency is worse: `blocking` "leads" when its probe waits longer.
    who, ratio = _lead(rows, BLOCKING, best, metric, scene.noise)
    outcome = {"a": CONFIRMS, "b": CONTRADICTS, "noise": NOISE, "one repeat": ONE_REPEAT}[who]
    detail = (
        f"at {users} users {what} `blocking` {_ms(rows.loc['blocking', metric])} = x{_x(ratio)} "
        f"of `{best}` {_ms(rows.loc[best, metric])}{why}"
    )
    return RuleCheck(rule, outcome, detail + _at(users, note))


RULES: dict[str, tuple[Rule, ...]] = {
    "hello": (trivial_endpoint,),
    "chat": (async_library, blocking_library),
    "chat_stream": (async_library, blocking_library),
    "items_read": (aiosqlite_thread, blocking_library),
    "items_write": (aiosqlite_thread, blocking_library),
    "cpu": (cpu_bound,),
    "mixed": (stalls_everyone, blocking_library),
}


def rules_for(scenario: str) -> tuple[Rule, ...]:
    """The rules a scenario tests; an unknown scenario still checks the blocking rule."""
    return RULES.get(scenario, (blocking_library,))
