"""The repeat statistic: how the repeats of one configuration become one figure.

Modelled on pyperf's `Benchmark` (the runs of one benchmark, their median and spread computed
once): wherever the report describes a configuration over its repeats (a verdict, a stalls row,
a client or database configuration, a token count of the sweep, a point of the hockey stick, a
capacity), it gives the **median**, the **min–max interval** and **n**, the repeats the figure
stands on. This module is the only place that computes them, in two shapes of the same
statistic: `Repeats.over` (or `Repeats.of`) for one metric of one configuration's rows,
`over_repeats` for a frame grouped by configuration (columns `<m>`, `<m>_lo`, `<m>_hi` and
`repeats`); `Repeats.from_row` reads one such row back.

A percentile the contract's sample rule may leave empty (contract.PERCENTILE_RULE) is known over
the repeats only when every repeat has it, so a median never stands on just the repeats that
happened to have the samples; any other metric skips a repeat without a value.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

import contract
from analysis.fmt import rate
from analysis.judge.cells import column

# Percentile columns over repeats: known only when every repeat has a value (see above).
EVERY_REPEAT: frozenset[str] = frozenset(contract.PERCENTILE_RULE)
# The interval's ends, as `over_repeats` names them.
LO, HI = "_lo", "_hi"

Ratio = tuple[float, float, float]


def safe_ratio(num: object, den: object) -> float:
    """num/den as a float: inf when only den is 0 (a style that did nothing), NaN if unknown."""
    a, b = float(num), float(den)  # type: ignore[arg-type]
    if math.isnan(a) or math.isnan(b) or (a == 0 and b == 0):
        return math.nan
    if b == 0:
        return math.inf
    return a / b


def numeric(rows: pd.DataFrame, name: str) -> pd.Series:
    """Column `name` of `rows` as floats, one per repeat: NaN where a value is missing or not a
    number, and for every row when the frame lacks the column."""
    return pd.to_numeric(column(rows, name, math.nan), errors="coerce").astype(float)


@dataclass(frozen=True)
class Repeats:
    """One metric of one configuration over its repeats: median, min–max interval and n."""

    median: float
    lo: float
    hi: float
    # The repeats the figure stands on (those with a value).
    n: int

    @classmethod
    def of(cls, values: Iterable[object], *, every: bool = False) -> "Repeats":
        """The statistic of `values` (one per repeat). Missing values are skipped, unless
        `every`: then one missing value leaves the figure unknown (a percentile, see above)."""
        series = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
        series = series.astype(float)
        present = series.dropna()
        if present.empty or (every and len(present) < len(series)):
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(
            float(present.median()), float(present.min()), float(present.max()), len(present)
        )

    @classmethod
    def over(cls, rows: pd.DataFrame, metric: str) -> "Repeats":
        """The statistic of column `metric` over `rows`, the repeats of one configuration (NaN
        when the frame lacks it); a percentile of the sample rule only when every repeat has it."""
        if metric not in rows:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls.of(rows[metric], every=metric in EVERY_REPEAT)

    @classmethod
    def from_row(cls, row: Mapping[str, object], metric: str, n: str = "repeats") -> "Repeats":
        """The statistic of `metric` in a row of `over_repeats` (or any frame that names its
        columns so: `<m>`, `<m>_lo`, `<m>_hi`, and `n` the column counting the repeats)."""

        def get(key: str) -> float:
            value = row.get(key)
            return math.nan if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]

        count = row.get(n)
        return cls(
            get(metric),
            get(f"{metric}{LO}"),
            get(f"{metric}{HI}"),
            0 if count is None or pd.isna(count) else int(count),  # type: ignore[call-overload]
        )

    @property
    def known(self) -> bool:
        """Whether there is a figure at all."""
        return not math.isnan(self.median)

    @property
    def spread(self) -> float:
        """(max - min) / median: the relative run-to-run spread."""
        return safe_ratio(self.hi - self.lo, self.median)

    def ratio(self, other: "Repeats") -> Ratio:
        """self / other: the medians' ratio, with the widest range the two intervals allow
        (lo = min / other's max, hi = max / other's min)."""
        return (
            safe_ratio(self.median, other.median),
            safe_ratio(self.lo, other.hi),
            safe_ratio(self.hi, other.lo),
        )

    def text(self, fmt=rate) -> str:  # type: ignore[no-untyped-def]
        """`1,234/s`, with the min–max in brackets when there were several repeats."""
        if not self.known:
            return "n/a"
        if self.n > 1 and not (math.isnan(self.lo) or math.isnan(self.hi)):
            return f"{fmt(self.median)} ({fmt(self.lo)}–{fmt(self.hi)})"
        return fmt(self.median)


def over_repeats(
    rows: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    extra: Mapping[str, tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Per group of `by` (one configuration): `<m>` the median, `<m>_lo` and `<m>_hi` the
    min–max of each of `metrics` present in `rows`, `repeats` the rows of the group, and any
    `extra` named aggregations (name -> (column, how)). Sorted by `by`."""
    present = [m for m in metrics if m in rows.columns]
    named: dict[str, tuple[str, str]] = {}
    for m in present:
        named[m] = (m, "median")
        named[f"{m}{LO}"] = (m, "min")
        named[f"{m}{HI}"] = (m, "max")
    named["repeats"] = (by[0], "size")
    named.update(extra or {})
    if rows.empty:
        return pd.DataFrame(columns=[*by, *named])
    grouped = rows.groupby(list(by), sort=True)
    out = grouped.agg(**named)
    every = [m for m in present if m in EVERY_REPEAT]
    if every:
        missing = grouped[every].count().lt(grouped.size(), axis=0)
        for m in every:
            out.loc[missing[m], [m, f"{m}{LO}", f"{m}{HI}"]] = math.nan
    out = out.reset_index()
    return out.sort_values(list(by), kind="stable").reset_index(drop=True)
