"""What each cell is (ok, failed, stalled, invalid, not steady) and what a scenario is judged by."""

import pandas as pd

import contract
from analysis.vocabulary import DEFAULT_ARM

OK = "ok"
FAILED = "failed"
STALLED = contract.STALLED
INVALID = contract.INVALID
NOT_STEADY = contract.NOT_STEADY
# A cell's flags, most serious first: a failed cell that also stalled counts as failed.
FLAGS: tuple[str, ...] = (FAILED, STALLED, INVALID, NOT_STEADY)

load_side_only = contract.load_side_only

THROUGHPUT = "rps"
# Metrics where less is better; any other verdict metric is a rate (more is better).
LOWER_IS_BETTER: frozenset[str] = frozenset({"cpu_ms_per_req"})
METRIC_NAMES: dict[str, str] = {
    "rps": "throughput",
    "cpu_ms_per_req": "server CPU per request",
}


def column(summary: pd.DataFrame, name: str, default: object) -> pd.Series:
    """A column of `summary`, or `default` for every row when the frame lacks it."""
    if name in summary:
        values = summary[name]
        if values.isna().any():
            values = values.astype(object).where(values.notna(), default)
        return values
    return pd.Series([default] * len(summary), index=summary.index)


def outcomes(summary: pd.DataFrame) -> pd.Series:
    """Each row's outcome: `ok` or its most serious flag (failed, stalled, invalid, not steady)."""
    out = pd.Series(OK, index=summary.index, dtype=object)
    out[~column(summary, "steady", True).astype(bool)] = NOT_STEADY
    out[~column(summary, "valid", True).astype(bool)] = INVALID
    out[column(summary, "stalled", False).astype(bool)] = STALLED
    out[column(summary, "status", "ok") != "ok"] = FAILED
    return out


def arms(summary: pd.DataFrame) -> pd.Series:
    """Each row's arm: "" for the default arm (observe on), else e.g. `noobs`."""
    return column(summary, "arm", DEFAULT_ARM).astype(str).str.strip()


def database_of(db: object) -> str:
    """`postgresql` from `postgresql+asyncpg` (summary `db`); "" when no driver is named."""
    text = str(db or "").strip().lower()
    return text.split("+", 1)[0] if "+" in text else ""


def postgres_arms(summary: pd.DataFrame) -> set[str]:
    """Named arms whose every cell ran on PostgreSQL (summary `db`): the same apps on another
    database (`make bench-pg`), compared in their own report section, not a setting's fix."""
    if "db" not in summary:
        return set()
    named = arms(summary)
    pg = column(summary, "db", "").map(database_of) == "postgresql"
    return {str(arm) for arm in set(named) - {DEFAULT_ARM} if bool(pg[named == arm].all())}


def contract_metric(scenario: str) -> str:
    """The metric the contract judges `scenario` by: throughput unless VERDICT_METRIC says."""
    return contract.VERDICT_METRIC.get(scenario, THROUGHPUT)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is the better one."""
    return metric not in LOWER_IS_BETTER


def metric_name(metric: str) -> str:
    """A metric in words: `throughput`, `server CPU per request`."""
    return METRIC_NAMES.get(metric, f"`{metric}`")
