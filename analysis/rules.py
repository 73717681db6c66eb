"""The FastAPI docs' rules each scenario tests, and how the data confirms or contradicts them."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from analysis.transform import ratio_with_spread

CONFIRMS = "confirms"
CONTRADICTS = "contradicts"
NOISE = "inside the noise"
MIXED = "depends on the library"
NOT_MEASURED = "not measured"

ASYNC_STYLES: tuple[str, ...] = ("async", "async (aiohttp)")


@dataclass(frozen=True)
class RuleCheck:
    """One docs rule, what the data says about it and the numbers behind that."""

    rule: str
    outcome: str
    detail: str


# `rows` is one scenario at one user count, indexed by style (see transform.at_users).
Rule = Callable[[pd.DataFrame, float], RuleCheck]


def _lead(rows: pd.DataFrame, a: str, b: str, metric: str, threshold: float) -> tuple[str, float]:
    """Which of styles a and b is higher in `metric` beyond the noise: `a`, `b` or `noise`."""
    mid, lo, hi = ratio_with_spread(rows.loc[a], rows.loc[b], metric)
    if mid >= 1 + threshold and lo > 1:
        return "a", mid
    if not math.isnan(mid) and mid <= 1 / (1 + threshold) and hi < 1:
        return "b", mid
    return "noise", mid


def _x(ratio: float) -> str:
    return "inf" if math.isinf(ratio) else f"{ratio:.2f}"


def _rate(x: float) -> str:
    return f"{x:,.0f}/s" if x >= 10 else f"{x:.1f}/s"


def trivial_endpoint(rows: pd.DataFrame, threshold: float) -> RuleCheck:
    """`async def` without I/O skips the threadpool hop, so it should beat `def`."""
    rule = (
        "No I/O in the endpoint: `async def` runs on the event loop and skips the threadpool "
        "hop, so it should be faster than `def`"
    )
    if not {"sync", "async"} <= set(rows.index):
        return RuleCheck(rule, NOT_MEASURED, "needs `sync` and `async` at the same load")
    who, ratio = _lead(rows, "async", "sync", "rps", threshold)
    outcome = {"a": CONFIRMS, "b": CONTRADICTS, "noise": NOISE}[who]
    return RuleCheck(rule, outcome, f"`async` throughput x{_x(ratio)} of `sync`")


def async_library(rows: pd.DataFrame, threshold: float) -> RuleCheck:
    """An `await`-able I/O library in `async def` should beat `def` + threadpool."""
    rule = "I/O through a library that supports `await`: declare the endpoint `async def`"
    present = [s for s in ASYNC_STYLES if s in rows.index]
    if "sync" not in rows.index or not present:
        return RuleCheck(rule, NOT_MEASURED, "needs `sync` and an async style at the same load")
    outcomes, details = [], []
    for style in present:
        who, ratio = _lead(rows, style, "sync", "rps", threshold)
        outcomes.append({"a": CONFIRMS, "b": CONTRADICTS, "noise": NOISE}[who])
        details.append(f"`{style}` x{_x(ratio)} of `sync` ({outcomes[-1]})")
    outcome = outcomes[0] if len(set(outcomes)) == 1 else MIXED
    return RuleCheck(rule, outcome, "; ".join(details))


def blocking_library(rows: pd.DataFrame, threshold: float) -> RuleCheck:
    """A blocking call inside `async def` serialises the server."""
    rule = (
        "A blocking library inside `async def` blocks the event loop: "
        "throughput collapses to about 1 / latency"
    )
    others = [s for s in rows.index if s != "blocking"]
    if "blocking" not in rows.index or not others:
        return RuleCheck(rule, NOT_MEASURED, "needs `blocking` and another style at the same load")
    best = str(rows.loc[others, "rps"].idxmax())
    who, _ = _lead(rows, best, "blocking", "rps", threshold)
    outcome = {"a": CONFIRMS, "b": CONTRADICTS, "noise": NOISE}[who]
    rps = rows["rps"]
    detail = f"`blocking` {_rate(rps['blocking'])} vs `{best}` {_rate(rps[best])}"
    latency_ms = rows.loc["blocking"].get("upstream_latency_ms")
    if latency_ms is not None and not pd.isna(latency_ms) and latency_ms > 0:
        detail += f"; 1 / latency = {_rate(1000 / latency_ms)}"
    return RuleCheck(rule, outcome, detail)


def aiosqlite_thread(rows: pd.DataFrame, threshold: float) -> RuleCheck:
    """aiosqlite hands each query to a thread, so `async def` need not be faster."""
    rule = (
        "aiosqlite runs queries on a thread per connection: measure before assuming "
        "`async def` is faster"
    )
    if not {"sync", "async"} <= set(rows.index):
        return RuleCheck(rule, NOT_MEASURED, "needs `sync` and `async` at the same load")
    who, ratio = _lead(rows, "async", "sync", "rps", threshold)
    if who == "a":
        return RuleCheck(rule, CONTRADICTS, f"`async` is faster here: x{_x(ratio)} of `sync`")
    return RuleCheck(rule, CONFIRMS, f"`async` is not faster: x{_x(ratio)} of `sync`")


def cpu_bound(rows: pd.DataFrame, threshold: float) -> RuleCheck:
    """CPU-bound work: one worker runs one piece of Python at a time in either style."""
    rule = (
        "CPU-bound work gains nothing from `async def`: one worker runs one piece of Python at "
        "a time either way (and `async def` also stalls the loop)"
    )
    if not {"sync", "async"} <= set(rows.index):
        return RuleCheck(rule, NOT_MEASURED, "needs `sync` and `async` at the same load")
    who, ratio = _lead(rows, "async", "sync", "rps", threshold)
    outcome = CONFIRMS if who == "noise" else CONTRADICTS
    p99 = (
        f"p99 `sync` {rows.loc['sync', 'p99_ms']:.1f} ms, "
        f"`async` {rows.loc['async', 'p99_ms']:.1f} ms"
    )
    return RuleCheck(rule, outcome, f"`async` throughput x{_x(ratio)} of `sync`; {p99}")


def stalls_everyone(rows: pd.DataFrame, threshold: float) -> RuleCheck:
    """One blocking call in `async def` delays even the trivial probe requests."""
    rule = "One blocking call in `async def` stalls every request on the worker, even trivial ones"
    others = [s for s in rows.index if s != "blocking"]
    if (
        "blocking" not in rows.index
        or not others
        or "probe_p99_ms" not in rows
        or rows["probe_p99_ms"].isna().all()
    ):
        return RuleCheck(rule, NOT_MEASURED, "needs probe p99 of `blocking` and another style")
    best = str(rows.loc[others, "probe_p99_ms"].idxmin())
    who, ratio = _lead(rows, "blocking", best, "probe_p99_ms", threshold)
    outcome = {"a": CONFIRMS, "b": CONTRADICTS, "noise": NOISE}[who]
    return RuleCheck(
        rule,
        outcome,
        f"probe p99 `blocking` {rows.loc['blocking', 'probe_p99_ms']:.1f} ms = x{_x(ratio)} "
        f"of `{best}` {rows.loc[best, 'probe_p99_ms']:.1f} ms",
    )


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
