"""What a probe run says of each route: one finding, the line to change, the number that shows it.

Pure over a loaded probe run (analysis.load.probe). A route's cells are checked in this order;
the first rule that holds is its finding, and every number in its sentences is its own:

1. `stalls`: a cell of the app as written met the lab's stall rule (no completion for the stall
   threshold with requests in flight). When its threads wait for a DB connection and the route
   has a `def` + `yield` dependency in the app's code, the site is that dependency
   (fastapi#12066: the connection belongs to requests that wait for a thread to validate their
   response before the dependency can close it); else where the loop or the threads were held.
2. `blocks_loop`: the loop sampler saw the app's own code hold the event loop past its threshold
   at least `MIN_HOLDS` times in the windows of the app as written, and on at least
   `MIN_HOLD_SHARE` of the requests sent there (a hold or two among tens of thousands of
   requests is a busy machine or a collector pause, not the route: a CI run on a loaded machine
   saw `/hello` of the lab's async app "held" that way). The site is where it held it longest in
   all, with the call under it; the light ping beside the load shows what it costs.
3. `starves_threadpool`: at some load every thread token was in use with requests waiting for
   one, and the arm with more tokens served more than the app as written, beyond the noise;
   unless the flip arm (rule 4) served more still: then the cheaper change with the bigger gain
   is the finding and the tokens' result a warning (a fast `def` route on a noisy machine keeps
   all 40 threads busy hopping to the pool, and more threads help it less than no hop at all).
4. `flip_faster`: the other style (the flip arm) served more than the app as written beyond the
   noise, or cost less server CPU per request beyond the noise where its throughput could not
   tell (the load generator saturated, or the throughputs were within the noise of each other),
   and did not hold the loop in the app's code.
5. `ok`: none of the above.

The noise is the route's own: the spread of its two as-written cells at the heaviest load
(analysis.judge.repeats), at least `MIN_NOISE`; with one cell (`--quick`) it is `QUICK_NOISE`.
An arm leads when its value over the median of those cells is at least 1 + noise and it beats
the best of them.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.fmt import ms, number, rate
from analysis.judge.repeats import Repeats
from analysis.load.probe import Held, ProbeCell, ProbeRun

STALLS = "stalls"
BLOCKS_LOOP = "blocks_loop"
STARVES = "starves_threadpool"
FLIP_FASTER = "flip_faster"
OK = "ok"
NOT_PROBED = "not_probed"
FINDINGS: tuple[str, ...] = (STALLS, BLOCKS_LOOP, STARVES, FLIP_FASTER, OK, NOT_PROBED)
MIN_HOLDS = 3
MIN_HOLD_SHARE = 0.01
MIN_NOISE = 0.10
QUICK_NOISE = 0.15
DB_WAIT = "waits for a DB connection"
POOLED_WAIT = "pooled connection"
YIELD_STYLE = "def + yield"
ROUTES_COLUMNS: tuple[str, ...] = (
    "method",
    "path",
    "route",
    "style",
    "dependencies",
    "finding",
    "site",
    "call",
    "capacity_rps",
    "capacity_bound",
    "p99_ms",
    "p99_users",
    "rps",
    "advice",
    "evidence",
)
ARM_LABELS = {"flip": "the other style", "maxconc": "`max_concurrency` on the `yield` dependency"}


def other_style(style: str) -> str:
    """`async def` for `def`, and back."""
    return "async def" if style == "def" else "def"


@dataclass
class ArmResult:
    """One arm of a route at the heaviest load, beside the app as written there."""

    arm: str
    label: str
    cell: ProbeCell | None
    ratio: float | None = None
    text: str = ""


@dataclass
class Finding:
    """One route: its finding, the line to change, the numbers behind it."""

    route: dict[str, Any]
    finding: str
    site: str = ""
    call: str = ""
    advice: str = ""
    evidence: str = ""
    # The number a reader looks at first ("0 req/s at 50 users", "x1.67 with 100 tokens").
    headline: str = ""
    capacity_rps: float | None = None
    capacity_bound: str = ""
    p99_ms: float | None = None
    p99_users: int | None = None
    rps: float | None = None
    noise: float | None = None
    # The app as written saturated the load generator at the heaviest load: `rps` is a floor.
    lower_bound: bool = False
    arms: list[ArmResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cells: list[ProbeCell] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The route's id."""
        return str(self.route["id"])

    @property
    def label(self) -> str:
        """`GET /items/{item_id}`."""
        return f"{self.route['method']} {self.route['path']}"

    def row(self) -> dict[str, Any]:
        """The route's row of routes.csv (results/README.md, "Probe runs")."""
        return {
            "method": self.route["method"],
            "path": self.route["path"],
            "route": self.id,
            "style": self.route["style"],
            "dependencies": dependency_text(self.route),
            "finding": self.finding,
            "site": self.site,
            "call": self.call,
            "capacity_rps": self.capacity_rps,
            "capacity_bound": self.capacity_bound,
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 1),
            "p99_users": self.p99_users,
            "rps": None if self.rps is None else round(self.rps, 1),
            "advice": self.advice,
            "evidence": self.evidence,
        }


def short_name(name: str) -> str:
    """A callable's name as a reader knows it: `get_db` for `app.api.deps.get_db`, the class
    for an instance's `__call__` (`OAuth2PasswordBearer` for `...OAuth2PasswordBearer.__call__`)."""
    parts = name.split(".")
    return parts[-2] if parts[-1] == "__call__" and len(parts) > 1 else parts[-1]


def dependencies_run(route: dict[str, Any], user_only: bool = False) -> list[tuple[str, str, int]]:
    """(short name, style, times a request runs it) of each dependency, in inventory order
    (the inventory lists a dependency as often as FastAPI calls it: probe.inventory.runs_once)."""
    counts: dict[tuple[str, str], int] = {}
    for d in route.get("dependencies", []):
        if not user_only or d.get("user"):
            key = (d["name"], d["style"])
            counts[key] = counts.get(key, 0) + 1
    return [(short_name(name), style, n) for (name, style), n in counts.items()]


def dependency_text(route: dict[str, Any]) -> str:
    """Each dependency with its style: `get_session: def + yield; get_db: def + yield (x2)`."""
    return "; ".join(
        f"{name}: {style}{f' (x{n})' if n > 1 else ''}"
        for name, style, n in dependencies_run(route)
    )


def per_s(x: float | None) -> str:
    """`1,234 req/s`."""
    return "-" if x is None or math.isnan(x) else f"{rate(x).removesuffix('/s')} req/s"


def ping(cell: ProbeCell) -> tuple[float, int]:
    """The light ping's median beside the load (exact, however few pings) and how many."""
    n = int(cell.metric("probe_requests") or 0)
    p50 = cell.metric("probe_p50_ms")
    if p50 is None:
        p50 = cell.metric("probe_p50_ms_raw")
    return (math.nan if p50 is None else float(p50)), n


def ping_text(cell: ProbeCell) -> str:
    """`p50 1,228 ms over 5 pings`."""
    p50, n = ping(cell)
    return f"p50 {ms(p50)} over {n} ping{'s' if n != 1 else ''}"


def leads(value: float, base: Repeats, noise: float) -> float | None:
    """value / base.median when the value leads beyond the noise and beats base's best."""
    if not base.known or value <= 0:
        return None
    if base.median <= 0:
        return math.inf
    ratio = value / base.median
    return ratio if ratio >= 1 + noise and value > base.hi else None


def costs_less(value: float | None, base: Repeats, noise: float) -> float | None:
    """base.median / value (CPU per request) when the value is lower beyond the noise."""
    if value is None or not base.known or value <= 0:
        return None
    ratio = base.median / value
    return ratio if ratio >= 1 + noise and value < base.lo else None


def stall_text(cell: ProbeCell) -> str:
    """What a stalled cell's server looked like, in its own words."""
    judged = cell.result.judged
    parts = [judged.stall_evidence]
    if judged.threads:
        parts.append(f"threads: {judged.threads}")
    if sites := judged.thread_sites:
        where, n = next(iter(sites.items()))
        parts.append(f"{n} of them at {where}")
    if loop := judged.loop_site:
        parts.append(f"the event loop held at {loop}")
    return "; ".join(p for p in parts if p)


def find(route: dict[str, Any], cells: Sequence[ProbeCell], plan: dict[str, Any]) -> Finding:
    """The finding of one probed route (the module docstring's rules, in order)."""
    mine = [c for c in cells if c.route == route["id"]]
    written = [c for c in mine if c.as_written]
    out = Finding(route, OK, cells=mine)
    if not written:
        out.finding, out.advice = NOT_PROBED, "no cell of the route was measured"
        return out
    heaviest = max(c.users for c in written)
    heavy = Repeats.of(c.rps for c in written if c.users == heaviest and c.counted)
    if not heavy.known:
        # Only cells the load generator saturated: a lower bound of what the route serves.
        heavy = Repeats.of(c.rps for c in written if c.users == heaviest and c.load_side_only)
        out.lower_bound = heavy.known
    noise = QUICK_NOISE if heavy.n < 2 else max(MIN_NOISE, heavy.spread)
    out.noise = noise
    out.rps = heavy.median if heavy.known else None
    with_tail = [c for c in written if c.counted and c.result.metrics.p99_ms is not None]
    if with_tail:
        top = max(with_tail, key=lambda c: c.users)
        out.p99_ms, out.p99_users = top.result.metrics.p99_ms, top.users
    out.arms = arm_results(mine, heaviest, heavy, out.lower_bound)
    for arm, why in (plan.get("arms_left_out") or {}).items():
        out.arms.append(ArmResult(arm, ARM_LABELS.get(arm, arm), None, text=f"not run: {why}"))
    if stalled := [c for c in written if c.result.stalled]:
        return stalls(out, stalled, mine)
    held = [h for c in written for h in c.user_held() if h.route in ("", route["id"])]
    holds, sent = sum(h.count for h in held), sum(c.result.metrics.requests or 0 for c in written)
    if holds >= MIN_HOLDS and holds >= MIN_HOLD_SHARE * sent:
        return blocks_loop(out, held, written, mine)
    if held:
        out.warnings.append(
            f"the loop was held {holds} times in the app's code ({held[0].site}, p99 "
            f"{ms(held[0].q(99))}) among {number(sent)} requests: under "
            f"{MIN_HOLD_SHARE:.0%} of them, so not counted as the route's"
        )
    lead = flip_lead(out, mine, heaviest, heavy, noise)
    if not out.lower_bound and (gain := starves(out, written, mine, heavy, noise)) is not None:
        if lead is None or lead[0] <= gain:
            return out
        out.warnings.append(
            f"{out.evidence}; but as `{other_style(route['style'])}` (the flip arm) it served "
            f"more still (x{lead[0]:.2f}): the finding is the flip"
        )
    return flip_or_ok(out, lead, heaviest, heavy, noise)


def arm_results(
    mine: Sequence[ProbeCell], users: int, base: Repeats, lower_bound: bool = False
) -> list[ArmResult]:
    """Each arm's cell at the heaviest load against the app as written there (whose throughput
    is only a lower bound when the load generator saturated: the ratio is then at most)."""
    out = []
    for c in mine:
        if c.rate is not None or c.users != users or c.as_written:
            continue
        label = ARM_LABELS.get(c.arm, f"{c.tokens} thread tokens")
        ratio = c.rps / base.median if base.known and base.median > 0 else None
        if c.result.stalled:
            state = "stalled"
        else:
            at_most = "≤" if lower_bound else ""
            state = per_s(c.rps)
            state += f", x{at_most}{ratio:.2f} the app as written" if ratio else ""
            if not c.counted:
                state += f" ({c.result.invalid_reason or 'not steady'})"
        if held := c.user_held():
            state += f"; held the loop {held[0].count} times at {held[0].site}"
            state += f" (p99 {ms(held[0].q(99))})"
        out.append(ArmResult(c.arm or f"t{c.tokens:03d}", label, c, ratio, state))
    return out


def stalls(out: Finding, stalled: Sequence[ProbeCell], mine: Sequence[ProbeCell]) -> Finding:
    """Rule 1: the route stalls."""
    first = min(stalled, key=lambda c: c.users)
    judged = first.result.judged
    gap = first.result.metrics.gap_max_s
    out.finding = STALLS
    out.headline = f"0 req/s at {first.users} users: nothing completed for {number(gap or 0)} s"
    out.evidence = f"at {first.users} users: {stall_text(first)}"
    yields = [
        d for d in out.route.get("dependencies", []) if d["style"] == YIELD_STYLE and d.get("user")
    ]
    if (DB_WAIT in judged.threads or POOLED_WAIT in judged.threads) and yields:
        dep = yields[0]
        out.site, out.call = f"{dep['file']}:{dep['line']}", short_name(dep["name"])
        out.advice = stall_fix(out.call, next((c for c in mine if c.arm == "maxconc"), None))
    elif loop := judged.loop_site:
        out.site = loop.split()[0]
        out.advice = (
            f"The event loop itself is held at {loop}: the route's code blocks inside "
            "`async def`; move that call to a thread (`def`) or use an async library"
        )
    else:
        sites = judged.thread_sites or {}
        out.site = next(iter(sites), "").split(" ")[0]
        out.advice = (
            "Every thread waits for what the evidence names: give it more room than the "
            "threadpool has threads, or write the route `async def` with an async library"
        )
    return out


def stall_fix(dependency: str, fix: ProbeCell | None) -> str:
    """The advice for fastapi#12066, with the `max_concurrency` arm's measured effect."""
    if fix is None:
        return (
            f"Cap `{dependency}` with `Depends({dependency}, max_concurrency=<pool size>)` "
            "(FastAPI 0.165+) or open and close the session inside the endpoint (fastapi#12066)"
        )
    limits = (fix.result.probe or {}).get("arm_settings", {}).get("max_concurrency", {})
    n = next(iter(limits.values()), "N")
    if fix.result.stalled:
        return (
            f"`max_concurrency={n}` on `{dependency}` did not end the stall here; open and close "
            "the session inside the endpoint, or write the route `async def` with an async driver "
            "(fastapi#12066)"
        )
    return (
        f"Cap the `yield` dependency: `Depends({dependency}, max_concurrency={n})` (FastAPI "
        f"0.165+; {n} = the pool's connections): no stall at {fix.users} users, {per_s(fix.rps)}; "
        "or open and close the session inside the endpoint (fastapi#12066: the dependency holds "
        "its connection until a thread has validated the response)"
    )


def blocks_loop(
    out: Finding, held: Sequence[Held], written: Sequence[ProbeCell], mine: Sequence[ProbeCell]
) -> Finding:
    """Rule 2: the app's code holds the event loop."""
    by_site: dict[str, list[Held]] = {}
    for h in held:
        by_site.setdefault(h.site, []).append(h)
    site, parts = max(by_site.items(), key=lambda kv: sum(sum(h.held_ms) for h in kv[1]))
    timed = all(len(h.cpu_ms) == len(h.held_ms) for h in parts)
    calls = Held(
        site,
        parts[0].call,
        parts[0].route,
        True,
        tuple(v for h in parts for v in h.held_ms),
        tuple(v for h in parts for v in h.cpu_ms) if timed else (),
        any(h.awaited for h in parts),
    )
    out.finding, out.site, out.call = BLOCKS_LOOP, site, calls.call
    loaded = max(written, key=lambda c: c.users)
    light = min(written, key=lambda c: c.users)
    flip = next((c for c in mine if c.arm == "flip"), None)
    what = f"`{calls.call}`" if calls.call else "pure-Python work (CPU)"
    share = calls.cpu_share
    on_core = "" if share is None else f", {share:.0%} of it on a core"
    out.headline = f"the loop held {ms(calls.q(99))} per call (p99)"
    out.evidence = (
        f"{calls.count} calls held the loop past the threshold in the windows, at {site} "
        f"({what}{', awaited' if calls.awaited else ''}): p50 {ms(calls.q(50))}, p99 "
        f"{ms(calls.q(99))}, max {ms(max(calls.held_ms))}{on_core}; "
        f"the light ping beside it: {ping_text(loaded)} at {loaded.users} users"
    )
    if light is not loaded:
        out.evidence += f" ({ping_text(light)} at {light.users} users)"
    if flip is not None:
        still = flip.user_held()
        out.evidence += (
            f"; as `{other_style(out.route['style'])}` (the flip arm): {per_s(flip.rps)} against "
            f"{per_s(loaded.rps)}, ping {ping_text(flip)}"
            + (f", the loop still held {still[0].count} times" if still else ", the loop free")
        )
    out.advice = block_fix(out.route, site, calls, what, loaded, flip)
    return out


# Throughputs "alike" for the flip's CPU-per-request lead: the flip's at least the app's worst
# cell, and at most this far under its median (the noise can be large: a fixed bound).
ALIKE = 0.15
# A hold whose loop thread was on a core at least this share of the time computed; below it, the
# call waited (a socket, a sleep, a lock) with the loop held.
COMPUTED = 0.5


def block_fix(
    route: dict[str, Any],
    site: str,
    calls: Held,
    what: str,
    loaded: ProbeCell,
    flip: ProbeCell | None,
) -> str:
    """The advice for a held loop, from what the flip arm measured and what the holds were:
    a call awaited (an async library) or not, computing (CPU) or waiting."""
    call, share = calls.call, calls.cpu_share
    computed = share is not None and share >= COMPUTED
    if calls.awaited and call:
        if computed:
            return (
                f"The loop is held by CPU work inside {what} at {site}, which the route awaits: "
                f"the async library's own Python between two of its awaits ({share:.0%} of the "
                "held time on a core), not a blocking call, so neither `def` nor "
                "`run_in_threadpool` frees it (one process, one GIL). Use a client that does "
                'less per call (README "Which HTTP client"), fewer requests at once per process, '
                "or more worker processes"
            )
        return (
            f"{what} at {site} is awaited but blocks inside: the async library waits with the "
            "loop held (a sync call on its path: a DNS lookup, a file, a lock); find it with "
            "`py-spy dump` while it holds, or run the whole call in a thread"
        )
    if route["style"] == "async def" and route.get("awaits") is False:
        if not call and flip is not None:
            return (
                f"The work at {site} is pure-Python CPU: as `def` (the flip arm) the route served "
                f"{per_s(flip.rps)} against {per_s(loaded.rps)} (no faster: one process runs "
                f"Python on one core), but the ping beside it waited {ms(ping(flip)[0])} instead "
                f"of {ms(ping(loaded)[0])}: declare it `def` so it stops holding every other "
                "request, or move the work to a process pool"
            )
        gain = f" ({per_s(flip.rps)} against {per_s(loaded.rps)})" if flip is not None else ""
        return (
            f"Declare it `def` (remove `async`): its body awaits nothing, so FastAPI would run "
            f"{what} in the threadpool and the loop would stay free{gain}"
        )
    if call and computed:
        return (
            f"{what} at {site} computes on the loop ({share:.0%} of the held time on a core): "
            f"move it off the loop, `await run_in_threadpool({call}, ...)` keeps other requests "
            "answered (one GIL still: no faster), a process pool also adds cores"
        )
    if call:
        return (
            f"Replace {what} at {site} with its async equivalent, or run it in a thread: "
            f"`await run_in_threadpool({call}, ...)`"
        )
    return (
        f"Move the CPU work at {site} off the loop: `await run_in_threadpool(...)` keeps other "
        "requests answered; a process pool also adds cores"
    )


def starves(
    out: Finding,
    written: Sequence[ProbeCell],
    mine: Sequence[ProbeCell],
    base: Repeats,
    noise: float,
) -> float | None:
    """Rule 3: every thread busy with requests waiting, and more threads served more; when it
    holds, `out` says so and the gain (the most tokens' throughput over the app's) is returned."""
    full = [
        c
        for c in sorted(written, key=lambda c: c.users)
        if (c.result.mechanisms.threadpool_peak_in_use or 0) >= c.tokens
        and (c.result.mechanisms.threadpool_peak_waiting or 0) > 0
    ]
    if not full:
        return None
    first = full[0]
    waited = (
        f"at {first.users} users all {first.tokens} thread tokens were in use and "
        f"{number(first.result.mechanisms.threadpool_peak_waiting or 0)} requests waited for one"
    )
    more = sorted(
        (c for c in mine if c.token_arm and c.tokens > first.tokens and c.counted),
        key=lambda c: -c.rps,
    )
    ratio = leads(more[0].rps, base, noise) if more else None
    if ratio is None:
        if more:
            out.warnings.append(
                f"{waited}, but {more[0].tokens} tokens served {per_s(more[0].rps)} against "
                f"{per_s(base.median)}: within the noise ({noise:.0%}), so the threads are not "
                "what limits the route"
            )
        return None
    best, end = more[0], out.route["endpoint"]
    out.finding = STARVES
    out.site, out.call = f"{end['file']}:{end['line']}", short_name(end["name"])
    out.headline = f"x{ratio:.2f} with {best.tokens} thread tokens"
    out.evidence = (
        f"{waited}; with {best.tokens} tokens: {per_s(best.rps)} against {per_s(base.median)} "
        f"(x{ratio:.2f}, noise {noise:.0%})"
    )
    out.advice = (
        f"The route waits for threads, not CPU: raise anyio's thread tokens to {best.tokens} "
        "(`anyio.to_thread.current_default_thread_limiter().total_tokens = "
        f"{best.tokens}` in the lifespan) or move its blocking I/O to an async client in "
        "`async def`"
    )
    return ratio


def flip_lead(
    out: Finding, mine: Sequence[ProbeCell], users: int, base: Repeats, noise: float
) -> tuple[float, str, ProbeCell] | None:
    """The flip arm's lead at `users` (ratio, what it is measured by, its cell), or None: it
    held the loop in the app's code, or did not lead beyond the noise."""
    flip = next((c for c in mine if c.arm == "flip" and c.users == users), None)
    if flip is None or flip.user_held():
        return None
    heavy = [c for c in mine if c.as_written and c.users == users]
    ratio = leads(flip.rps, base, noise) if flip.counted and not out.lower_bound else None
    basis = "throughput"
    if ratio is not None or not all(c.load_side_only or c.counted for c in heavy):
        return None if ratio is None else (ratio, basis, flip)
    cost = Repeats.of(c.result.judged.cpu_ms_per_req for c in heavy)
    cpu_noise = max(noise, cost.spread) if cost.n > 1 else noise
    if out.lower_bound or flip.load_side_only:
        ratio = costs_less(flip.result.judged.cpu_ms_per_req, cost, cpu_noise)
        basis = "server CPU per request (the load generator saturated first)"
    elif flip.counted and base.known and flip.rps >= max(base.lo, base.median * (1 - ALIKE)):
        # Throughput alike, within the noise: on a machine busy with other work neither the
        # server nor the load generator saturated, and the server's own cost per request is
        # what tells the styles apart (what a server that is CPU-bound would carry).
        ratio = costs_less(flip.result.judged.cpu_ms_per_req, cost, cpu_noise)
        basis = "server CPU per request (throughput within the noise)"
    return None if ratio is None else (ratio, basis, flip)


def flip_or_ok(
    out: Finding,
    lead: tuple[float, str, ProbeCell] | None,
    users: int,
    base: Repeats,
    noise: float,
) -> Finding:
    """Rules 4 and 5: the other style is faster (`lead`, from flip_lead), or there is nothing
    to change."""
    other = other_style(out.route["style"])
    if lead is not None:
        ratio, basis, flip = lead
        end = out.route["endpoint"]
        out.finding = FLIP_FASTER
        out.site, out.call = f"{end['file']}:{end['line']}", short_name(end["name"])
        out.headline = f"x{ratio:.2f} as `{other}`"
        out.evidence = (
            f"at {users} users as `{other}` (the flip arm): {per_s(flip.rps)} against "
            f"{base.text()} as written, x{ratio:.2f} by {basis}; noise {noise:.0%}"
        )
        out.advice = f"Declare `{out.call}` `{other}`: x{ratio:.2f} by {basis} at {users} users"
        return out
    out.finding = OK
    out.headline = f"{per_s(base.median)} at {users} users" if base.known else "-"
    if out.lower_bound:
        out.headline = f"≥ {out.headline} (the load generator saturated first)"
    out.advice = (
        f"Keep it `{out.route['style']}`: no stall, no loop held, and neither the other style nor "
        "more threads served more"
    )
    out.evidence = "; ".join(f"{a.label}: {a.text}" for a in out.arms if a.cell is not None)
    return out


def findings(run: ProbeRun) -> list[Finding]:
    """Every route of the inventory: probed ones judged by `find`, the others `not_probed`."""
    out = []
    for route in run.routes():
        plan = run.route_plan(route["id"])
        if not plan or plan.get("not_probed"):
            why = plan.get("not_probed") if plan else "not selected (--routes)"
            out.append(Finding(route, NOT_PROBED, advice=why, headline="-"))
            continue
        finding = find(route, run.cells, plan)
        capacity = run.capacity
        rows = capacity[capacity["scenario"] == route["id"]] if len(capacity) else capacity
        if len(rows):
            row = rows.iloc[0]
            value = row["capacity_rps"]
            finding.capacity_rps = None if pd.isna(value) else float(value)
            finding.capacity_bound = str(row["bound"])
        out.append(finding)
    return out


def routes_frame(found: Sequence[Finding]) -> pd.DataFrame:
    """routes.csv as a frame, one row per route of the app."""
    frame = pd.DataFrame.from_records([f.row() for f in found], columns=list(ROUTES_COLUMNS))
    return frame.astype({"p99_users": "Int64"})
