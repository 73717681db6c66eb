"""What the probe runs for each route: its cells, their arms, and how long that takes.

Pure: from a route (the inventory's entry), what it was found to need (its requests, whether its
arms apply) and the probe's settings, to the ordered cells of that route and an estimate.

Per route, by default (`--quick` in brackets):
1. closed loop at 10, 50 and 200 users [10, 200], the app as written: the throughput at a few
   loads, the threadpool and the loop at each, and at 200 users the lab's stall rule;
2. at the heaviest load, the arms (each one setting changed, the code untouched): the other
   style (`flip`), the threadpool at 10 and 100 tokens for a route with anything on a thread
   [100 only], `max_concurrency` on each `def` + `yield` dependency;
3. the as-written cell at the heaviest load again, after the arms [not in quick]: two cells of
   the same configuration, interleaved with the arms, whose spread is the route's noise;
4. the capacity at the SLO, open loop [not in quick]: rates at 0.25, 0.6 and 1.0 of the best
   throughput the closed loop saw, then one bisection step (loadtests/search.py).
"""

from dataclasses import asdict, dataclass, field
from typing import Any

from loadtests.matrix import Cell
from probe.arms import FLIP, MAX_CONCURRENCY, Arm
from probe.inventory import ASYNC_DEF, DEF, runs_in_threadpool

# The as-written app, in every cell id: arms name what they change.
VARIANT = "app"
NO_CLIENT = "-"
# Seconds a probe cell costs beyond warm-up + window + drain: the app's start, Locust's start,
# collection. Measured on the example app on 2 cores; only the printed estimate uses it.
CELL_OVERHEAD_S = 2.6


@dataclass(frozen=True)
class Clock:
    """A probe cell's timeline (the lab's `loadtests.locust_runner.Clock` fields)."""

    warmup_s: float = 0.5
    warmup_max_s: float = 4.0
    duration_s: float = 1.5
    window_max_s: float = 3.0
    sample_target: int = 1000
    # No completion for this long with requests in flight: stalled (the drain stops there).
    # Above httpx's 5 s default timeout, so a gap its errors end is not called a stall.
    stall_s: float = 6.0
    grace_s: float = 7.0
    # py-spy dumps the server's threads after this long without a completion.
    dump_after_s: float = 3.0
    spawn_rate: float = 1000.0
    request_timeout_s: float = 60.0


# --quick: shorter windows (a p99 needs 1,000 samples: quick cells often print p95), and a
# stall threshold of 5.5 s, still above httpx's 5 s default timeout.
QUICK_CLOCK = Clock(
    warmup_s=0.3, warmup_max_s=2.0, duration_s=1.0, window_max_s=2.0, sample_target=1000,
    stall_s=5.5, grace_s=6.5, dump_after_s=2.5,
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Every knob of the probe that changes a result (recorded in manifest.json `probe`)."""

    levels: tuple[int, ...] = (10, 50, 200)
    tokens: tuple[int, ...] = (10, 100)
    flip: bool = True
    max_concurrency: bool = True
    repeat_heaviest: bool = True
    capacity: bool = True
    slo: str = "p99=500ms,errors=1%"
    capacity_factors: tuple[float, ...] = (0.25, 0.6, 1.0)
    bisect_steps: int = 1
    rate_slots: int = 500
    block_ms: float = 10.0
    default_tokens: int = 40
    clock: Clock = field(default_factory=Clock)

    @property
    def heaviest(self) -> int:
        """The load the arms run at."""
        return max(self.levels)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the manifest."""
        return asdict(self)


QUICK = Settings(
    levels=(10, 200),
    tokens=(100,),
    repeat_heaviest=False,
    capacity=False,
    clock=QUICK_CLOCK,
)


@dataclass(frozen=True)
class PlannedCell:
    """One cell of a route: its identity and the arm its server runs."""

    cell: Cell
    arm: Arm
    why: str


def flip_applies(route: dict[str, Any]) -> str:
    """Why the flip arm does not apply to `route` ("" when it does)."""
    style = route["style"]
    if style not in (DEF, ASYNC_DEF):
        return f"a `{style}` endpoint (a generator) has no other style"
    if style == ASYNC_DEF and route.get("awaits") is not False:
        if route.get("awaits") is None:
            return "the endpoint's source cannot be read, so whether it awaits is unknown"
        return "the body awaits: as `def` it would need blocking calls in place of its awaits"
    return ""


def threaded(route: dict[str, Any]) -> bool:
    """Whether anything of the route runs on a worker thread (endpoint or a dependency)."""
    if runs_in_threadpool(route["style"]):
        return True
    return any(runs_in_threadpool(d["style"]) for d in route.get("dependencies", []))


def yield_dependencies(route: dict[str, Any]) -> list[str]:
    """The route's `def` + `yield` dependencies (module.qualname), in the user's code, once."""
    names = (
        d["name"]
        for d in route.get("dependencies", [])
        if d["style"] == f"{DEF} + yield" and d.get("user")
    )
    return list(dict.fromkeys(names))


def route_cells(
    route: dict[str, Any], settings: Settings, pool_capacity: int | None = None
) -> tuple[list[PlannedCell], dict[str, str]]:
    """The closed-loop cells of one route in run order, and why each arm left out is.

    `pool_capacity` (the DB pools' size + overflow the smoke server found) is the
    `max_concurrency` of the dependency arm: at most as many sessions as connections, the fix
    the lab measured (README "`def` stalls"); without a pool, half the threadpool.
    """
    rid, heavy = route["id"], settings.heaviest
    cells = [
        PlannedCell(Cell(rid, VARIANT, NO_CLIENT, users, 1), Arm(), "as written")
        for users in settings.levels
    ]
    left_out: dict[str, str] = {}
    arms: list[PlannedCell] = []
    endpoint = route["endpoint"]["name"]
    if settings.flip:
        if why := flip_applies(route):
            left_out[FLIP] = why
        else:
            other = DEF if route["style"] == ASYNC_DEF else ASYNC_DEF
            arm = Arm(FLIP, flip=(endpoint,))
            arms.append(PlannedCell(Cell(rid, VARIANT, NO_CLIENT, heavy, 1, arm=FLIP), arm, other))
    if settings.tokens:
        if threaded(route):
            for tokens in settings.tokens:
                arm = Arm(f"t{tokens:03d}", tokens=tokens)
                cell = Cell(rid, VARIANT, NO_CLIENT, heavy, 1, tokens=tokens)
                arms.append(PlannedCell(cell, arm, f"{tokens} thread tokens"))
        else:
            left_out["tokens"] = "nothing of the route runs on a thread"
    if settings.max_concurrency:
        deps = yield_dependencies(route)
        if deps:
            n = pool_capacity or settings.default_tokens // 2
            arm = Arm(MAX_CONCURRENCY, max_concurrency=dict.fromkeys(deps, n))
            cell = Cell(rid, VARIANT, NO_CLIENT, heavy, 1, arm=MAX_CONCURRENCY)
            arms.append(PlannedCell(cell, arm, f"max_concurrency={n} on {', '.join(deps)}"))
        else:
            left_out[MAX_CONCURRENCY] = "no `def` + `yield` dependency in the app's code"
    cells += arms
    if arms and settings.repeat_heaviest:
        cells.append(PlannedCell(Cell(rid, VARIANT, NO_CLIENT, heavy, 2), Arm(), "as written"))
    return cells, left_out


def ladder(best_rps: float | None, settings: Settings) -> list[int]:
    """The capacity search's rates: fractions of the best closed-loop throughput, rising."""
    if not best_rps or best_rps <= 0:
        return []
    rates = sorted({max(1, nice(best_rps * f)) for f in settings.capacity_factors})
    return rates


def nice(rate: float) -> int:
    """A rate rounded to two significant figures (readable cell ids, stable across runs)."""
    if rate < 10:
        return max(1, round(rate))
    digits = len(str(int(rate))) - 2
    return int(round(rate, -digits))


def cell_seconds(cell: Cell, settings: Settings, latency_s: float = 0.0) -> float:
    """Estimated wall time of one probe cell (a window closing on its sample target: halfway)."""
    clock = settings.clock
    window = (clock.duration_s + clock.window_max_s) / 2
    if cell.rate is not None:
        window = min(clock.window_max_s, max(clock.duration_s, clock.sample_target / cell.rate))
    return CELL_OVERHEAD_S + clock.warmup_s + window + min(clock.grace_s, latency_s)


def estimate_s(routes: int, settings: Settings, cells: int, latency_s: float = 0.0) -> float:
    """Estimated wall time of `cells` closed-loop cells and each route's capacity search."""
    one = cell_seconds(Cell("-", VARIANT, NO_CLIENT, 1, 1), settings, latency_s)
    searches = 0.0
    if settings.capacity:
        rate_cell = Cell("-", VARIANT, NO_CLIENT, 1, 1, rate=100)
        per = len(settings.capacity_factors) + settings.bisect_steps
        searches = routes * per * cell_seconds(rate_cell, settings, latency_s)
    return cells * one + searches
