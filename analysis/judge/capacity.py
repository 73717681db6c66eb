"""Open-loop (rate) cells and SLO capacity: the hockey-stick points, each style's capacity, its
ratio to `def`'s and the headline sentence. Pure: frames in, frames and dataclasses out.

Every SLO check is contract.slo.check's; capacity.csv's searches are the orchestrator's. Three
rates describe a rate cell, and the section names each: `offered_rps` (the arrival schedule's
rate), `achieved_rps` (sent: what the load generator sent per second of window) and
`served_rps` (served: `ok` responses completed inside the window per second). summary.csv's
`rps` (the window's arrivals answered ok, some during the drain) is not shown: past capacity a
server would look as if it served the offered rate.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.fmt import rate
from analysis.judge.repeats import Repeats
from analysis.judge.transform import require_columns
from analysis.vocabulary import BASELINE, DEFAULT_ARM, ordered
from analysis.vocabulary import style_words as variant_style_words
from contract.slo import PASS, Slo, check, parse_slo

# Where the search's answer is only a lower bound on the true capacity.
LOWER_BOUNDS: frozenset[str] = frozenset({"above_highest", "load_side"})
BELOW_LOWEST = "below_lowest"
POINT_KEY: tuple[str, ...] = ("scenario", "style", "arm", "offered_rps")
CELL_COLUMNS: tuple[str, ...] = (
    "scenario",
    "variant",
    "client",
    "arm",
    "style",
    "repeat",
    "offered_rps",
    "status",
    "valid",
    "stalled",
    "p50_ms",
    "p99_ms",
)


def style_words(variant: str, client: str, arm: str = DEFAULT_ARM) -> str:
    """`` `def` ``, `` `async def` + aiohttp ``, `` `def` + httpx2 ``, with the arm if any
    (analysis.vocabulary.style_words)."""
    text = variant_style_words(variant, client)
    return f"{text} (arm `{arm}`)" if arm else text


def slo_words(slo: Slo) -> str:
    """`p99 ≤ 500 ms and ≤ 1 % errors`."""
    return f"p{slo.quantile:g} ≤ {slo.latency_ms:g} ms and ≤ {slo.errors_pct:g} % errors"


def run_slo(manifest: Mapping[str, Any], capacity: pd.DataFrame) -> Slo | None:
    """The run's SLO: capacity.csv's (the first search's), else manifest `matrix.slo`, else None."""
    if not capacity.empty:
        return parse_slo(str(capacity["slo"].iloc[0]))
    spec = manifest.get("matrix")
    text = spec.get("slo") if isinstance(spec, Mapping) else None
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return parse_slo(text)
    except ValueError:
        return None


def rate_cells(rates: pd.DataFrame, slo: Slo | None) -> pd.DataFrame:
    """Every rate cell in reading order, with `achieved_ratio` (sent / offered) and its SLO
    check (`slo_status`, `slo_why`: contract.slo.check; empty without an SLO)."""
    require_columns(rates, CELL_COLUMNS, "rate cells")
    out = rates.copy()
    out["achieved_ratio"] = out["achieved_rps"] / out["offered_rps"]
    checked = [check(row, slo) if slo else None for row in out.to_dict("records")]
    out["slo_status"] = [c.status if c else "" for c in checked]
    out["slo_why"] = [c.why if c else "" for c in checked]
    rank = {s: i for i, s in enumerate(ordered(out["style"]))}
    out["_rank"] = out["style"].map(rank)
    out = out.sort_values(["scenario", "_rank", "arm", "offered_rps", "repeat"], kind="stable")
    return out.drop(columns="_rank").reset_index(drop=True)


def _over_repeats(statuses: Sequence[str]) -> str:
    distinct = set(statuses)
    if len(distinct) == 1:
        return statuses[0]
    return f"{sum(s == PASS for s in statuses)} of {len(statuses)} pass"


# The figures of a hockey-stick point, over the repeats (the repeat statistic's median).
POINT_METRICS: tuple[str, ...] = (
    "p50_ms",
    "p99_ms",
    "rps",
    "achieved_rps",
    "served_rps",
    "achieved_ratio",
)


def rate_points(cells: pd.DataFrame) -> pd.DataFrame:
    """The hockey stick: one point per scenario x style x arm x offered rate (rate_cells' rows).

    Each of POINT_METRICS is the median over the repeats that ran (status ok), over the valid
    ones when there are any (a percentile only when each of them has it: the sample rule);
    `p99_ms_raw` likewise, the exact p99 whatever its count, for a point whose repeats had too
    few samples for a p99 (`latency_n` their fewest). `stalled`: some repeat stalled;
    `invalid`: no repeat valid (the load side, not the server, set the numbers); `slo_status`
    pass/fail/unjudged when every repeat agrees, else `k of n pass`.
    """
    rows = []
    for key, part in cells.groupby(list(POINT_KEY), sort=False):
        ran = part[part["status"] == "ok"]
        valid = ran[ran["valid"].astype(bool)]
        basis = valid if not valid.empty else ran
        statuses = [s for s in part["slo_status"] if s]
        figures = {m: Repeats.over(basis, m).median for m in POINT_METRICS}
        raw = Repeats.over(basis, "p99_ms_raw").median
        counts = pd.to_numeric(_column(basis, "latency_n"), errors="coerce")
        rows.append(
            {
                **dict(zip(POINT_KEY, key, strict=True)),
                "variant": part["variant"].iloc[0],
                "client": part["client"].iloc[0],
                "repeats": len(part),
                **figures,
                "p99_ms_raw": raw,
                "latency_n": float(counts.min()) if counts.notna().any() else math.nan,
                "stalled": bool(part["stalled"].astype(bool).any()),
                "invalid": valid.empty,
                "slo_status": _over_repeats(statuses) if statuses else "",
            }
        )
    columns = [*POINT_KEY, "variant", "client", "repeats", *POINT_METRICS, "p99_ms_raw"]
    columns += ["latency_n", "stalled", "invalid", "slo_status"]
    return pd.DataFrame(rows, columns=columns)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame:
        return frame[name]
    return pd.Series([math.nan] * len(frame), index=frame.index, dtype=float)


@dataclass(frozen=True)
class Throughput:
    """What one rate cell sent and served, per second of its window (NaN: not recorded)."""

    offered: float
    sent: float
    served: float

    def text(self) -> str:
        """`sent 596/s, served 590/s`; `served not recorded` in a run before `served_rps`."""
        served = "not recorded" if math.isnan(self.served) else rate(self.served)
        sent = "not recorded" if math.isnan(self.sent) else rate(self.sent)
        return f"sent {sent}, served {served}"


NO_THROUGHPUT = Throughput(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class StyleCapacity:
    """One style's capacity at the SLO in one scenario, over its searches (repeats)."""

    scenario: str
    style: str
    arm: str
    variant: str
    client: str
    slo: str
    # Median over the repeats (the lower middle one when a repeat found none); NaN: none.
    capacity: float
    lo: float
    hi: float
    repeats: int
    # Repeats whose lowest rate already failed (no capacity).
    below: int
    # The bound, limit and reason of the repeat the median stands for.
    bound: str
    limit: float
    limit_reason: str
    p99_ms: float
    # The failing rate where the cell stalled, if it did.
    stalled_at: float | None = None
    # What the repeat the median stands for sent and served at its capacity and at its limit.
    at_capacity: Throughput = NO_THROUGHPUT
    at_limit: Throughput = NO_THROUGHPUT
    # Capacity over `def`'s (same scenario, default arm) and whether it is a bound: "≥", "≤".
    ratio: float | None = None
    ratio_sign: str = ""

    @property
    def lower_bound(self) -> bool:
        """Whether the capacity is only a lower bound (no rate tried failed validly above it)."""
        return self.bound in LOWER_BOUNDS

    @property
    def name(self) -> str:
        """The style in the report's words."""
        return style_words(self.variant, self.client, self.arm)


def _stalled_at(row: pd.Series, cells: pd.DataFrame) -> float | None:
    limit = row["limit_rps"]
    if pd.isna(limit):
        return None
    if "stall" in str(row["limit_reason"]).lower():
        return float(limit)
    if cells.empty:
        return None
    at = cells[
        (cells["scenario"] == row["scenario"])
        & (cells["style"] == row["style"])
        & (cells["arm"] == row["arm"])
        & (cells["offered_rps"] == limit)
    ]
    return float(limit) if at["stalled"].astype(bool).any() else None


def _throughput(row: pd.Series, cells: pd.DataFrame, offered: object) -> Throughput:
    """What the search's own cell (its repeat) at `offered` sent and served."""
    if cells.empty or offered is None or pd.isna(offered):  # type: ignore[call-overload]
        return NO_THROUGHPUT
    at = cells[
        (cells["scenario"] == row["scenario"])
        & (cells["style"] == row["style"])
        & (cells["arm"] == row["arm"])
        & (cells["offered_rps"] == offered)
        & (cells["repeat"] == row["repeat"])
    ]
    if at.empty:
        return NO_THROUGHPUT
    cell = at.iloc[0]
    sent, served = (float(cell.get(k, math.nan)) for k in ("achieved_rps", "served_rps"))
    return Throughput(float(offered), sent, served)  # type: ignore[arg-type]


def _one(part: pd.DataFrame, cells: pd.DataFrame) -> StyleCapacity:
    # The median of the searches, where a search that found no capacity counts as below every
    # other one: then the lower middle search stands for the style.
    ordered_rows = part.sort_values(["capacity_rps", "repeat"], na_position="first")
    middle = ordered_rows.iloc[(len(ordered_rows) - 1) // 2]
    found = Repeats.of(part["capacity_rps"])
    capacity = found.median if found.n == len(part) else float(middle["capacity_rps"])
    return StyleCapacity(
        scenario=str(middle["scenario"]),
        style=str(middle["style"]),
        arm=str(middle["arm"]),
        variant=str(middle["variant"]),
        client=str(middle["client"]),
        slo=str(middle["slo"]),
        capacity=capacity,
        lo=found.lo,
        hi=found.hi,
        repeats=len(part),
        below=int(part["capacity_rps"].isna().sum()),
        bound=str(middle["bound"]),
        limit=float(middle["limit_rps"]),
        limit_reason=str(middle["limit_reason"]),
        p99_ms=float(middle["p99_at_capacity_ms"]),
        stalled_at=_stalled_at(middle, cells),
        at_capacity=_throughput(middle, cells, middle["capacity_rps"]),
        at_limit=_throughput(middle, cells, middle["limit_rps"]),
    )


def _with_ratio(c: StyleCapacity, base: StyleCapacity | None) -> StyleCapacity:
    if base is None or c is base or c.bound == BELOW_LOWEST or base.bound == BELOW_LOWEST:
        return c
    if not (c.capacity > 0 and base.capacity > 0):
        return c
    if c.lower_bound and base.lower_bound:
        return c  # two lower bounds: their ratio bounds nothing
    sign = "≥" if c.lower_bound else ("≤" if base.lower_bound else "")
    return StyleCapacity(**{**c.__dict__, "ratio": c.capacity / base.capacity, "ratio_sign": sign})


def capacities(capacity: pd.DataFrame, cells: pd.DataFrame | None = None) -> list[StyleCapacity]:
    """Per scenario x SLO x style x arm: the capacity over the repeats' searches, in style order,
    with its ratio to `def`'s; `cells` (rate_cells) tell whether a failing cell stalled."""
    if capacity.empty:
        return []
    cells = cells if cells is not None else pd.DataFrame()
    out: list[StyleCapacity] = []
    for (_scenario, _slo), group in capacity.groupby(["scenario", "slo"], sort=False):
        found = [_one(part, cells) for _, part in group.groupby(["style", "arm"], sort=False)]
        rank = {s: i for i, s in enumerate(ordered(c.style for c in found))}
        found.sort(key=lambda c: (rank[c.style], c.arm))
        base = next((c for c in found if c.style == BASELINE and c.arm == DEFAULT_ARM), None)
        out += [_with_ratio(c, base) for c in found]
    return out


def _capacity_parts(c: StyleCapacity) -> tuple[str, list[str]]:
    if c.bound == BELOW_LOWEST or math.isnan(c.capacity):
        value, notes = f"< {_rps(c.limit)}", []
    elif c.bound == "above_highest":
        value, notes = f"≥ {_rps(c.capacity)}", ["every rate tried met the SLO"]
    elif c.bound == "load_side":
        value, notes = f"≥ {_rps(c.capacity)}", ["the load generator could not offer more"]
    else:
        value, notes = _rps(c.capacity), []
    if c.stalled_at is not None:
        notes.append(f"stalls at {_rps(c.stalled_at)}")
    return value, notes


def capacity_text(c: StyleCapacity, extra: Sequence[str] = ()) -> str:
    """The capacity in honest words: `380 req/s`, `≥ 900 req/s (every rate tried met the SLO)`,
    `≥ 900 req/s (the load generator could not offer more)`, `< 20 req/s`, a stall named
    (`(stalls at 20 req/s)`); `extra` notes join the brackets."""
    value, notes = _capacity_parts(c)
    notes = [*notes, *extra]
    return f"{value} ({'; '.join(notes)})" if notes else value


def ratio_text(c: StyleCapacity) -> str:
    """`x2.37`, `≥ x2.37` (a lower bound), `≤ x0.50`; `baseline` for `def`, else `-`."""
    if c.style == BASELINE and not c.arm:
        return "baseline"
    if c.ratio is None:
        return "-"
    return f"{c.ratio_sign} x{c.ratio:.2f}".strip()


def limit_text(c: StyleCapacity) -> str:
    """The first failing rate and why, or why there is none."""
    if math.isnan(c.limit):
        return "none: every rate tried met the SLO"
    return f"{_rps(c.limit)}: {c.limit_reason or 'no reason recorded'}"


def headline(caps: Sequence[StyleCapacity]) -> list[str]:
    """One sentence per SLO searched in a scenario, from the numbers, e.g. "At p99 ≤ 500 ms and
    ≤ 1 % errors, `def` carries 380 req/s, `async def` + aiohttp 900 req/s (x2.37 of `def`)."."""
    sentences = []
    for slo_text in dict.fromkeys(c.slo for c in caps):
        parts = []
        for i, c in enumerate(c for c in caps if c.slo == slo_text):
            verb = " carries" if i == 0 else ""
            ratio = [f"{ratio_text(c)} of `def`"] if c.ratio is not None else []
            parts.append(f"{c.name}{verb} {capacity_text(c, ratio)}")
        sentences.append(f"At {slo_words(parse_slo(slo_text))}, {', '.join(parts)}.")
    return sentences


def _rps(x: float) -> str:
    return rate(x).replace("/s", " req/s")
