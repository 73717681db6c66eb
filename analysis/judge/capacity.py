"""Open-loop (rate) cells and SLO capacity: the hockey-stick points, each style's capacity, its
ratio to `def`'s and the headline sentence. Pure: frames in, frames and dataclasses out.

Every SLO judgement is contract.slo.judge's; capacity.csv's searches are the orchestrator's.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.fmt import rate
from analysis.judge.cells import DEFAULT_ARM
from analysis.judge.transform import require_columns
from analysis.plot.styles import ordered
from contract.slo import PASS, Slo, judge, parse_slo

# Where the search's answer is only a lower bound on the true capacity.
LOWER_BOUNDS: frozenset[str] = frozenset({"above_highest", "load_side"})
BELOW_LOWEST = "below_lowest"
BASELINE = "sync"
# The report's words for each handler style (the brief's: `def`, `async def`, blocking-in-async).
VARIANT_WORDS: dict[str, str] = {
    "sync": "`def`",
    "async": "`async def`",
    "blocking": "blocking-in-async",
}
# Clients that every proxy app uses by default: named only for `async def`, whose library is
# the point (httpx vs aiohttp), and for another client than httpx.
PLAIN_CLIENTS: frozenset[str] = frozenset({"", "-", "none"})
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
    """`` `def` ``, `` `async def` + aiohttp ``, `blocking-in-async`, `` `def` + httpx2 ``."""
    text = VARIANT_WORDS.get(variant, f"`{variant}`")
    if client not in PLAIN_CLIENTS and (variant == "async" or client != "httpx"):
        text += f" + {client}"
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
    """Every rate cell in reading order, with `achieved_ratio` (achieved / offered) and its SLO
    judgement (`slo_status`, `slo_why`: contract.slo.judge; empty without an SLO)."""
    require_columns(rates, CELL_COLUMNS, "rate cells")
    out = rates.copy()
    out["achieved_ratio"] = out["achieved_rps"] / out["offered_rps"]
    judged = [judge(row, slo) if slo else None for row in out.to_dict("records")]
    out["slo_status"] = [j.status if j else "" for j in judged]
    out["slo_why"] = [j.why if j else "" for j in judged]
    rank = {s: i for i, s in enumerate(ordered(out["style"]))}
    out["_rank"] = out["style"].map(rank)
    out = out.sort_values(["scenario", "_rank", "arm", "offered_rps", "repeat"], kind="stable")
    return out.drop(columns="_rank").reset_index(drop=True)


def _verdict(statuses: Sequence[str]) -> str:
    distinct = set(statuses)
    if len(distinct) == 1:
        return statuses[0]
    return f"{sum(s == PASS for s in statuses)} of {len(statuses)} pass"


def rate_points(cells: pd.DataFrame) -> pd.DataFrame:
    """The hockey stick: one point per scenario x style x arm x offered rate (rate_cells' rows).

    p50/p99, throughput and achieved/offered are medians over the repeats that ran (status ok),
    over the valid ones when there are any. `stalled`: some repeat stalled; `invalid`: no repeat
    valid (the load side, not the server, set the numbers); `slo_status` pass/fail/unjudged when
    every repeat agrees, else `k of n pass`.
    """
    rows = []
    for key, part in cells.groupby(list(POINT_KEY), sort=False):
        ran = part[part["status"] == "ok"]
        valid = ran[ran["valid"].astype(bool)]
        basis = valid if not valid.empty else ran
        statuses = [s for s in part["slo_status"] if s]
        rows.append(
            {
                **dict(zip(POINT_KEY, key, strict=True)),
                "variant": part["variant"].iloc[0],
                "client": part["client"].iloc[0],
                "repeats": len(part),
                "p50_ms": basis["p50_ms"].median(),
                "p99_ms": basis["p99_ms"].median(),
                "rps": basis["rps"].median(),
                "achieved_ratio": basis["achieved_ratio"].median(),
                "stalled": bool(part["stalled"].astype(bool).any()),
                "invalid": valid.empty,
                "slo_status": _verdict(statuses) if statuses else "",
            }
        )
    columns = [*POINT_KEY, "variant", "client", "repeats", "p50_ms", "p99_ms", "rps"]
    columns += ["achieved_ratio", "stalled", "invalid", "slo_status"]
    return pd.DataFrame(rows, columns=columns)


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


def _one(part: pd.DataFrame, cells: pd.DataFrame) -> StyleCapacity:
    ordered_rows = part.sort_values(["capacity_rps", "repeat"], na_position="first")
    middle = ordered_rows.iloc[(len(ordered_rows) - 1) // 2]
    values = part["capacity_rps"].dropna()
    capacity = float(values.median()) if len(values) == len(part) else float(middle["capacity_rps"])
    return StyleCapacity(
        scenario=str(middle["scenario"]),
        style=str(middle["style"]),
        arm=str(middle["arm"]),
        variant=str(middle["variant"]),
        client=str(middle["client"]),
        slo=str(middle["slo"]),
        capacity=capacity,
        lo=float(values.min()) if len(values) else math.nan,
        hi=float(values.max()) if len(values) else math.nan,
        repeats=len(part),
        below=int(part["capacity_rps"].isna().sum()),
        bound=str(middle["bound"]),
        limit=float(middle["limit_rps"]),
        limit_reason=str(middle["limit_reason"]),
        p99_ms=float(middle["p99_at_capacity_ms"]),
        stalled_at=_stalled_at(middle, cells),
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
