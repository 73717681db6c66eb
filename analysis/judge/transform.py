"""Pure transforms of a run's summary: which rows count, aggregation over repeats, selections."""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

import contract
from analysis.judge.cells import (
    INVALID,
    OK,
    STALLED,
    THROUGHPUT,
    arms,
    column,
    load_side_only,
    outcomes,
)
from analysis.judge.repeats import Ratio, Repeats, over_repeats
from analysis.vocabulary import DEFAULT_ARM

# Metrics aggregated over repeats (analysis.judge.repeats): `<m>` (median), `<m>_lo`, `<m>_hi`.
METRICS: tuple[str, ...] = (
    "rps",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "probe_p50_ms",
    "probe_p99_ms",
    "probe_max_ms",
    "server_cpu_pct",
    "cpu_ms_per_req",
    "upstream_served_ms",
    "upstream_drift_ms",
    "little_ratio",
    "gap_max_s",
    "loop_lag_p99_ms",
    "loop_lag_max_ms",
    "threadpool_peak_in_use",
    "threadpool_peak_waiting",
    "http_pool_peak_active",
    "http_pool_peak_waiting",
    "db_pool_peak_checked_out",
    "server_rss_peak_mb",
    "overhead_p50_ms",
    "overhead_p99_ms",
)
# Why a style behaves as it does: what the server itself reported, when the run scraped it.
MECHANISM: tuple[str, ...] = (
    "server_cpu_pct",
    "loop_lag_max_ms",
    "loop_lag_p99_ms",
    "threadpool_peak_in_use",
    "threadpool_peak_waiting",
    "http_pool_peak_waiting",
    "db_pool_peak_checked_out",
    "overhead_p99_ms",
)
GROUP: tuple[str, ...] = ("scenario", "style", "users")
# Settings constant within a cell; the first repeat's value stands for the cell.
CELL_SETTINGS: tuple[str, ...] = ("variant", "client", "threadpool_tokens", "upstream_latency_ms")
# anyio's default limiter: what an untuned FastAPI app runs `def` endpoints with. In a token
# sweep, the verdicts and charts per users use this count (the sweep gets its own chart).
DEFAULT_TOKENS = 40


class MissingColumnError(KeyError):
    """A transform or plot needs columns the frame lacks; the message lists what is there."""

    def __str__(self) -> str:
        return str(self.args[0])


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str = "data") -> None:
    """Raise MissingColumnError naming the missing and the available columns."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MissingColumnError(
            f"{what} lacks column(s) {missing}; "
            f"available columns: {sorted(map(str, frame.columns))}"
        )


def usable(summary: pd.DataFrame, arm: str = DEFAULT_ARM) -> pd.DataFrame:
    """Rows of `arm` whose numbers describe the server: ok, valid, steady and not stalled."""
    require_columns(summary, ["status", "valid"], "summary")
    return summary[(outcomes(summary) == OK) & (arms(summary) == arm)]


def excluded(summary: pd.DataFrame) -> pd.DataFrame:
    """Default-arm rows kept out of the aggregates: failed, stalled, invalid or not steady."""
    require_columns(summary, ["status", "valid"], "summary")
    return summary[(outcomes(summary) != OK) & (arms(summary) == DEFAULT_ARM)]


def counted(summary: pd.DataFrame, metrics: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The rows verdicts count: usable ones, plus, in a scenario judged by another metric than
    throughput (`metrics`, scenario -> metric), cells invalid only because the load side
    saturated: the server's cost per request is still its own then."""
    require_columns(summary, ["status", "valid", "scenario"], "summary")
    out = outcomes(summary)
    default = arms(summary) == DEFAULT_ARM
    keep = (out == OK) & default
    metrics = metrics or {}
    other = summary["scenario"].map(lambda s: metrics.get(str(s), THROUGHPUT) != THROUGHPUT)
    steady = column(summary, "steady", True).astype(bool)
    load_side = column(summary, "invalid_reason", "").map(load_side_only)
    keep |= default & other.astype(bool) & (out == INVALID) & steady & load_side.astype(bool)
    return summary[keep]


def reference_tokens(tokens: pd.Series) -> int | None:
    """The token count a sweep's verdicts use: anyio's default if run, else the most common."""
    present = tokens.dropna().astype(int)
    if present.empty:
        return None
    if DEFAULT_TOKENS in set(present):
        return DEFAULT_TOKENS
    counts = present.value_counts()
    return int(min(counts[counts == counts.max()].index))


def at_reference_tokens(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of a token sweep at the reference count only; other runs are returned unchanged."""
    if "threadpool_tokens" not in summary or summary["threadpool_tokens"].nunique() <= 1:
        return summary
    keep = pd.Series(True, index=summary.index)
    # Per scenario x style: a style run at one count only (e.g. `async`) keeps its rows.
    for _, part in summary.groupby(["scenario", "style"], sort=False):
        tokens = part["threadpool_tokens"]
        if tokens.nunique() > 1:
            at_ref = tokens.isna() | (tokens == reference_tokens(tokens))
            keep[part.index] = at_ref.to_numpy(dtype=bool, na_value=True)
    return summary[keep]


def aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """Median and min-max spread over the usable repeats of each scenario x style x users."""
    require_columns(summary, [*GROUP, "rps", "p50_ms", "p99_ms"], "summary")
    return aggregate_rows(usable(summary))


def sample_counts(rows: pd.DataFrame) -> pd.Series:
    """Latency samples per row, what its percentiles stand on: `latency_n` (ok + censored
    requests of the window), or ok + censored where a frame lacks it; NaN if unknown."""
    ok = pd.to_numeric(column(rows, "ok", math.nan), errors="coerce").astype(float)
    censored = pd.to_numeric(column(rows, "censored", 0), errors="coerce").astype(float)
    counted = pd.to_numeric(column(rows, "latency_n", math.nan), errors="coerce").astype(float)
    return counted.fillna(ok + censored.fillna(0))


# The sample counts of contract.PERCENTILE_RULE, as an aggregated row names its fewest over the
# repeats: `n` for latency, `probe_n` for the probe, `<x>_n` for the others.
COUNT_NAMES: dict[str, str] = {"latency_n": "n", "probe_requests": "probe_n"}


def aggregate_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The repeat statistic (analysis.judge.repeats) of the given rows per scenario x style x
    users: `<m>`, `<m>_lo`, `<m>_hi` per metric and `repeats`.

    Besides: `n`, the fewest latency samples of any repeat (`probe_n`, `ttft_n`, ... likewise
    for the other percentiles' counts); `censored_min_ms`, the smallest censored age of any
    repeat; `censored`, their total; `load_side_invalid`, repeats counted although the load side
    saturated.
    """
    require_columns(rows, [*GROUP, "rps", "p50_ms", "p99_ms"], "summary")
    rows = at_reference_tokens(rows).copy()
    rows["_n"] = sample_counts(rows)
    rows["_load_side"] = ~column(rows, "valid", True).astype(bool)
    extra: dict[str, tuple[str, str]] = {
        "n": ("_n", "min"),
        "load_side_invalid": ("_load_side", "sum"),
    }
    counts = {count for _, count in contract.PERCENTILE_RULE.values()} - {"latency_n"}
    for col, how, name in (
        *((c, "min", COUNT_NAMES.get(c, c)) for c in sorted(counts)),
        ("censored_min_ms", "min", "censored_min_ms"),
        ("censored", "sum", "censored"),
    ):
        if col in rows.columns:
            rows[col] = pd.to_numeric(rows[col], errors="coerce").astype(float)
            extra[name] = (col, how)
    for col in CELL_SETTINGS:
        if col in rows.columns:
            extra[col] = (col, "first")
    if "loadgen_cpu_pct" in rows.columns:
        extra["loadgen_cpu_pct"] = ("loadgen_cpu_pct", "max")
    return over_repeats(rows, GROUP, METRICS, extra)


def relative_spread(agg: pd.DataFrame, metric: str = "rps") -> pd.Series:
    """(max - min) / median over repeats: the run-to-run spread of one metric."""
    require_columns(agg, [metric, f"{metric}_lo", f"{metric}_hi"], "aggregate")
    return (agg[f"{metric}_hi"] - agg[f"{metric}_lo"]) / agg[metric]


def compared_users(
    agg: pd.DataFrame, scenario: str, min_styles: int = 2, metric: str = THROUGHPUT
) -> int | None:
    """The highest user count at which at least `min_styles` styles have a value of `metric`."""
    require_columns(agg, [*GROUP, metric], "aggregate")
    rows = agg[(agg["scenario"] == scenario) & agg[metric].notna()]
    counts = rows.groupby("users")["style"].nunique()
    enough = counts[counts >= min_styles]
    if enough.empty:
        return None
    return int(enough.index.max())


def at_users(agg: pd.DataFrame, scenario: str, users: int) -> pd.DataFrame:
    """The aggregated rows of one scenario at one user count, indexed by style."""
    require_columns(agg, GROUP, "aggregate")
    rows = agg[(agg["scenario"] == scenario) & (agg["users"] == users)]
    return rows.set_index("style")


def ratio_with_spread(num: pd.Series, den: pd.Series, metric: str) -> Ratio:
    """num/den of a metric's repeat statistic (analysis.judge.repeats.Repeats.ratio): the
    medians' ratio, with the widest range the min-max intervals allow."""
    return Repeats.from_row(num, metric).ratio(Repeats.from_row(den, metric))


def scenarios(summary: pd.DataFrame) -> list[str]:
    """The run's scenarios in the contract's order, unknown ones after, alphabetically."""
    known = contract.SCENARIOS
    present = set(summary["scenario"])
    return [s for s in known if s in present] + sorted(present - set(known))


@dataclass(frozen=True)
class Stall:
    """A style that stalled at one load: in how many of its repeats, and the evidence."""

    scenario: str
    style: str
    users: int
    stalled: int
    repeats: int
    evidence: str = ""

    def text(self) -> str:
        """`sync` stalled at 200 users in 3 of 3 repeats: <evidence>."""
        head = (
            f"`{self.style}` stalled at {self.users} users in {self.stalled} of "
            f"{self.repeats} repeat{'s' if self.repeats != 1 else ''}"
        )
        return f"{head}: {self.evidence}" if self.evidence else head


def stalls(summary: pd.DataFrame) -> list[Stall]:
    """Every scenario x style x users of the default arm with a stalled repeat."""
    require_columns(summary, [*GROUP, "status", "valid"], "summary")
    rows = at_reference_tokens(summary[arms(summary) == DEFAULT_ARM])
    flags = outcomes(rows) == STALLED
    out: list[Stall] = []
    for (scenario, style, users), part in rows.groupby(list(GROUP), sort=True):
        hit = flags[part.index]
        if not hit.any():
            continue
        evidence = [str(e) for e in column(part[hit], "stall_evidence", "") if str(e).strip()]
        out.append(
            Stall(
                str(scenario),
                str(style),
                int(users),
                int(hit.sum()),
                len(part),
                evidence[0] if evidence else "",
            )
        )
    return out
