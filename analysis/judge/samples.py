"""The sample-count rule (contract.min_samples) and lower bounds from censored requests.

A percentile q is printed only when n >= ceil(10 / (1 - q/100)) samples support it; n is
ok + censored requests for latency, probe requests for the probe. A censored request's latency
is its age when the cell ended, a lower bound: a percentile at or above the smallest censored
age (`censored_min_ms`) is printed as "≥ 123 ms".
"""

import math
from dataclasses import dataclass

import pandas as pd

import contract
from analysis.fmt import ms

# The percentiles summary.csv holds, highest first: a tail figure falls back along this list.
LATENCY_PERCENTILES: tuple[int, ...] = (99, 95, 90, 50)
PROBE_PERCENTILES: tuple[int, ...] = (99, 50)
GE = "≥"


def _n(n: object) -> int | None:
    if n is None or pd.isna(n):  # type: ignore[call-overload]
        return None
    return int(n)  # type: ignore[call-overload]


def supported(q: float, n: object) -> bool:
    """Whether n samples support percentile q; an unknown n (older runs) is not held against it."""
    count = _n(n)
    return True if count is None else contract.supported(q, count)


def highest_supported(n: object, qs: tuple[int, ...] = LATENCY_PERCENTILES) -> int | None:
    """The highest of `qs` that n samples support, or None when n is below every one."""
    return next((q for q in qs if supported(q, n)), None)


def rule_text() -> str:
    """The rule in one sentence, for the report."""
    needs = ", ".join(f"p{q} {contract.min_samples(q):,}" for q in (50, 90, 95, 99))
    return (
        f"A percentile q is printed only with n >= ceil({contract.SAMPLES_BEYOND} / (1 - q/100)) "
        f"samples ({needs}); n is ok + censored requests (probe requests for the probe), the "
        "fewest of any repeat. Otherwise it shows `n too small (n=…)`, and where a tail figure "
        "is needed the highest percentile n supports is used and named, e.g. `p90 (n=312)`. A "
        "percentile at or above the smallest censored age (a request still in flight when the "
        f"cell ended) is a lower bound, printed `{GE} 123 ms`."
    )


def too_small(n: object) -> str:
    """`n too small (n=12)`."""
    count = _n(n)
    return f"n too small (n={count:,})" if count is not None else "n too small"


def lower_bound(value: float, censored_min_ms: object) -> bool:
    """Whether a percentile rests on censored requests: at or above the smallest censored age."""
    if censored_min_ms is None or pd.isna(censored_min_ms) or math.isnan(value):  # type: ignore[call-overload]
        return False
    return value >= float(censored_min_ms)  # type: ignore[arg-type]


def fmt_pct(value: float, q: float, n: object, censored_min_ms: object = None) -> str:
    """One percentile as the report prints it: `123 ms`, `≥ 123 ms` or `n too small (n=…)`."""
    if not supported(q, n):
        return too_small(n)
    if value is None or pd.isna(value):
        return "n/a"
    text = ms(float(value))
    return f"{GE} {text}" if lower_bound(float(value), censored_min_ms) else text


@dataclass(frozen=True)
class Tail:
    """The tail figure a row supports: which percentile (or max), its value, n, lower bound."""

    column: str
    name: str  # p99, p90, max
    value: float
    n: int | None
    bound: bool = False

    @property
    def label(self) -> str:
        """`p99`, or `p90 (n=312)` when the rule forced a lower percentile."""
        if self.name == "p99" or self.n is None:
            return self.name
        return f"{self.name} (n={self.n:,})"

    def text(self) -> str:
        """`p99 128 ms`, `p90 (n=312) ≥ 1,200 ms`."""
        value = ms(self.value)
        return f"{self.label} {GE + ' ' if self.bound else ''}{value}"


def tail(
    row: pd.Series,
    prefix: str = "",
    n_column: str = "n",
    qs: tuple[int, ...] = LATENCY_PERCENTILES,
    censored: bool = True,
) -> Tail | None:
    """The highest percentile of `row` its n supports (None when none is, or no value)."""
    n = row.get(n_column)
    q = highest_supported(n, qs)
    if q is None:
        return None
    column = f"{prefix}p{q}_ms"
    value = row.get(column)
    if value is None or pd.isna(value):
        return None
    bound = censored and lower_bound(float(value), row.get("censored_min_ms"))
    return Tail(column, f"p{q}", float(value), _n(n), bound)


def common_tail(
    a: pd.Series, b: pd.Series, prefix: str = "", n_column: str = "n"
) -> tuple[int | None, int | None]:
    """The highest latency percentile both rows support, and the smaller n."""
    counts = [_n(r.get(n_column)) for r in (a, b)]
    known = [c for c in counts if c is not None]
    n = min(known) if known else None
    qs = LATENCY_PERCENTILES if not prefix else PROBE_PERCENTILES
    q = highest_supported(n, qs)
    if q is not None and any(pd.isna(r.get(f"{prefix}p{q}_ms")) for r in (a, b)):
        return None, n
    return q, n
