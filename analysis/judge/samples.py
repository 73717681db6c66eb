"""Reading percentiles under the contract's sample rule, and lower bounds from censored requests.

The rule is the contract's, applied where summary.csv is written (contract.PERCENTILE_RULE,
`contract.apply_sample_rule`): a percentile its sample count does not support is an empty
column, its exact value kept in `<column>_raw`. This module only reads that: which percentile a
row has, what to print for an empty one (`n too small (n=…)`), and whether a percentile rests on
censored requests: at or above the smallest censored age (`censored_min_ms`) it is a lower bound,
printed "≥ 123 ms". Over repeats a percentile is known only when every repeat has it
(analysis.judge.repeats), so the fewest samples of any repeat decide, as `n` reports them
(`tail_over_repeats`: one configuration's repeats as the one row the other functions read).
"""

import math
from dataclasses import dataclass

import pandas as pd

import contract
from analysis.fmt import ms
from analysis.judge.repeats import Repeats, numeric
from analysis.judge.transform import sample_counts

# The percentiles summary.csv holds, highest first: a tail figure falls back along this list.
LATENCY_PERCENTILES: tuple[int, ...] = (99, 95, 90, 50)
PROBE_PERCENTILES: tuple[int, ...] = (99, 50)
GE = "≥"


def _n(n: object) -> int | None:
    if n is None or pd.isna(n):  # type: ignore[call-overload]
        return None
    return int(n)  # type: ignore[call-overload]


def _value(x: object) -> float | None:
    if x is None or pd.isna(x):  # type: ignore[call-overload]
        return None
    return float(x)  # type: ignore[arg-type]


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
    """`n too small (n=12)`: what an empty percentile prints."""
    count = _n(n)
    return f"n too small (n={count:,})" if count is not None else "n too small"


def lower_bound(value: float, censored_min_ms: object) -> bool:
    """Whether a percentile rests on censored requests: at or above the smallest censored age."""
    cmin = _value(censored_min_ms)
    if cmin is None or math.isnan(value):
        return False
    return value >= cmin


def fmt_pct(value: object, n: object = None, censored_min_ms: object = None) -> str:
    """One percentile column as the report prints it: `123 ms`, `≥ 123 ms`; an empty one
    `n too small (n=…)` when its count `n` is known (the sample rule emptied it), else `n/a`."""
    number = _value(value)
    if number is None:
        return too_small(n) if _n(n) is not None else "n/a"
    text = ms(number)
    return f"{GE} {text}" if lower_bound(number, censored_min_ms) else text


def fmt_max(value: object, censored_min_ms: object = None) -> str:
    """The maximum (always written): `900 ms`, `≥ 900 ms` when it is a censored age."""
    number = _value(value)
    if number is None:
        return "n/a"
    text = ms(number)
    return f"{GE} {text}" if lower_bound(number, censored_min_ms) else text


@dataclass(frozen=True)
class Tail:
    """The tail figure a row has: which percentile, its value, n, whether a lower bound."""

    column: str
    name: str  # p99, p90, ...
    value: float
    n: int | None
    bound: bool = False

    @property
    def label(self) -> str:
        """`p99`, or `p90 (n=312)` when the rule left only a lower percentile."""
        if self.name == "p99" or self.n is None:
            return self.name
        return f"{self.name} (n={self.n:,})"

    def text(self) -> str:
        """`p99 128 ms`, `p90 (n=312) ≥ 1,200 ms`."""
        value = ms(self.value)
        return f"{self.label} {GE + ' ' if self.bound else ''}{value}"


def highest(
    row: pd.Series, prefix: str = "", qs: tuple[int, ...] = LATENCY_PERCENTILES
) -> int | None:
    """The highest of `qs` whose `<prefix>p<q>_ms` the row has (not empty), or None."""
    return next((q for q in qs if _value(row.get(f"{prefix}p{q}_ms")) is not None), None)


def tail(
    row: pd.Series,
    prefix: str = "",
    n_column: str = "n",
    qs: tuple[int, ...] = LATENCY_PERCENTILES,
    censored: bool = True,
) -> Tail | None:
    """The highest percentile the row has (None when it has none)."""
    q = highest(row, prefix, qs)
    if q is None:
        return None
    column = f"{prefix}p{q}_ms"
    value = float(row[column])
    bound = censored and lower_bound(value, row.get("censored_min_ms"))
    return Tail(column, f"p{q}", value, _n(row.get(n_column)), bound)


def tail_over_repeats(rows: pd.DataFrame) -> pd.Series:
    """The latency percentiles of one configuration's repeats `rows` as one row that `tail`,
    `tail_text` and `fmt_pct` read: each `p<q>_ms` of LATENCY_PERCENTILES the median over the
    repeats (the repeat statistic: known only when every repeat has it), `n` the fewest samples
    of any repeat and `censored_min_ms` the smallest censored age of any (NaN when unknown)."""
    out: dict[str, float] = {
        f"p{q}_ms": Repeats.over(rows, f"p{q}_ms").median for q in sorted(LATENCY_PERCENTILES)
    }
    counts = sample_counts(rows)
    out["n"] = float(counts.min()) if counts.notna().any() else math.nan
    out["censored_min_ms"] = float(numeric(rows, "censored_min_ms").min())
    return pd.Series(out, dtype=float)


def tail_text(row: pd.Series) -> tuple[str, bool]:
    """A row's tail as a table cell: `128 ms` (`≥ 128 ms` on censored requests) for a p99, else
    the highest percentile it has, named (`p90 (n=150) 700 ms`), else `n too small (n=…)`; and
    whether it is a lower bound."""
    t = tail(row)
    if t is None:
        return too_small(row.get("n")), False
    if t.name == "p99":
        return (f"{GE} " if t.bound else "") + ms(t.value), t.bound
    return t.text(), t.bound


def common_tail(
    a: pd.Series, b: pd.Series, prefix: str = "", n_column: str = "n"
) -> tuple[int | None, int | None]:
    """The highest percentile both rows have, and the smaller n."""
    counts = [_n(r.get(n_column)) for r in (a, b)]
    known = [c for c in counts if c is not None]
    n = min(known) if known else None
    qs = LATENCY_PERCENTILES if not prefix else PROBE_PERCENTILES
    q = next(
        (q for q in qs if all(_value(r.get(f"{prefix}p{q}_ms")) is not None for r in (a, b))),
        None,
    )
    return q, n
