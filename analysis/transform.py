"""Pure transforms of a run's summary: aggregation over repeats and per-scenario selections."""

import math
from collections.abc import Iterable

import pandas as pd

# Metrics aggregated over repeats; each becomes `<m>` (median), `<m>_lo` and `<m>_hi` (min, max).
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


def usable(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows whose numbers describe the server: status ok and valid."""
    require_columns(summary, ["status", "valid"], "summary")
    return summary[(summary["status"] == "ok") & summary["valid"].astype(bool)]


def excluded(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows kept out of every verdict: failed or invalid cells."""
    require_columns(summary, ["status", "valid"], "summary")
    return summary[(summary["status"] != "ok") | ~summary["valid"].astype(bool)]


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
    """Median and min-max spread over the valid repeats of each scenario x style x users."""
    require_columns(summary, [*GROUP, "rps", "p50_ms", "p99_ms"], "summary")
    rows = at_reference_tokens(usable(summary))
    metrics = [m for m in METRICS if m in rows.columns]
    named: dict[str, tuple[str, str]] = {}
    for m in metrics:
        named[m] = (m, "median")
        named[f"{m}_lo"] = (m, "min")
        named[f"{m}_hi"] = (m, "max")
    named["repeats"] = ("rps", "size")
    for col in CELL_SETTINGS:
        if col in rows.columns:
            named[col] = (col, "first")
    if "loadgen_cpu_pct" in rows.columns:
        named["loadgen_cpu_pct"] = ("loadgen_cpu_pct", "max")
    if rows.empty:
        return pd.DataFrame(columns=[*GROUP, *named])
    out = rows.groupby(list(GROUP), sort=True).agg(**named).reset_index()
    return out.sort_values(list(GROUP), kind="stable").reset_index(drop=True)


def relative_spread(agg: pd.DataFrame, metric: str = "rps") -> pd.Series:
    """(max - min) / median over repeats: the run-to-run spread of one metric."""
    require_columns(agg, [metric, f"{metric}_lo", f"{metric}_hi"], "aggregate")
    return (agg[f"{metric}_hi"] - agg[f"{metric}_lo"]) / agg[metric]


def compared_users(agg: pd.DataFrame, scenario: str, min_styles: int = 2) -> int | None:
    """The highest user count at which at least `min_styles` styles have valid numbers."""
    require_columns(agg, GROUP, "aggregate")
    rows = agg[agg["scenario"] == scenario]
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


def ratio_with_spread(num: pd.Series, den: pd.Series, metric: str) -> tuple[float, float, float]:
    """num/den of a metric's medians, with the widest ratio range the min-max spreads allow."""
    mid = safe_ratio(num[metric], den[metric])
    lo = safe_ratio(num[f"{metric}_lo"], den[f"{metric}_hi"])
    hi = safe_ratio(num[f"{metric}_hi"], den[f"{metric}_lo"])
    return mid, lo, hi


def safe_ratio(num: object, den: object) -> float:
    """num/den as a float: inf when only den is 0 (a style that did nothing), NaN if unknown."""
    a, b = float(num), float(den)  # type: ignore[arg-type]
    if math.isnan(a) or math.isnan(b) or (a == 0 and b == 0):
        return math.nan
    if b == 0:
        return math.inf
    return a / b


def scenarios(summary: pd.DataFrame) -> list[str]:
    """The run's scenarios in the contract's order, unknown ones after, alphabetically."""
    known = ("hello", "chat", "chat_stream", "items_read", "items_write", "cpu", "mixed")
    present = set(summary["scenario"])
    return [s for s in known if s in present] + sorted(present - set(known))
