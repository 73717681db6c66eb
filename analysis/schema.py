"""Column specifications of the files a run folder holds (see results/README.md)."""

from dataclasses import dataclass
from typing import Literal

Kind = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True)
class Column:
    """One column: its name, type, whether the file must have it and whether it may be empty."""

    name: str
    kind: Kind
    required: bool = False
    nullable: bool = True
    # False for columns beyond results/README.md: their absence is normal, not worth a warning.
    contract: bool = True


def _cols(
    kind: Kind, names: str, *, required: bool = False, nullable: bool = True, contract: bool = True
) -> list[Column]:
    return [Column(n, kind, required, nullable, contract) for n in names.split()]


# Required columns are the ones no chart or verdict can do without; the rest of the contract is
# optional so that a run from a slightly older orchestrator still reports (the report lists
# which ones were missing).
SUMMARY_COLUMNS: tuple[Column, ...] = (
    *_cols("str", "scenario variant client status cell_id", required=True, nullable=False),
    *_cols("int", "users repeat", required=True, nullable=False),
    *_cols("bool", "valid", required=True, nullable=False),
    *_cols("float", "rps p50_ms p99_ms", required=True),
    *_cols("int", "requests failures cut_off threadpool_tokens probe_requests"),
    *_cols("float", "p90_ms p95_ms max_ms ttft_p50_ms ttft_p99_ms itl_p50_ms itl_p99_ms"),
    *_cols("float", "probe_p50_ms probe_p99_ms probe_max_ms"),
    *_cols("float", "loadgen_cpu_pct upstream_cpu_pct server_cpu_pct"),
    *_cols("float", "duration_s warmup_s upstream_latency_ms"),
    *_cols("str", "invalid_reason reason"),
    # Mechanism columns scraped from the servers' /metrics (loadtests.scrape) and Server-Timing.
    # Not flagged when absent: runs from before issue 5 lack them, and the report's why column
    # and mechanism charts already say "not recorded" or stay out.
    *_cols(
        "float",
        "loop_lag_max_ms loop_lag_p99_ms threadpool_peak_in_use threadpool_peak_waiting "
        "http_pool_peak_active http_pool_peak_waiting db_pool_peak_checked_out server_rss_peak_mb "
        "overhead_p50_ms overhead_p99_ms",
        contract=False,
    ),
)

REQUESTS_COLUMNS: tuple[Column, ...] = (
    Column("kind", "str", required=True, nullable=False),
    Column("latency_ms", "float", required=True, nullable=False),
    Column("ok", "bool", required=True, nullable=False),
    # The server's Server-Timing, on proxy and DB routes only.
    *_cols("float", "app_ms upstream_ms db_ms"),
)

METRICS_COLUMNS: tuple[Column, ...] = (
    Column("ts", "float", required=True, nullable=False),
    Column("metric", "str", required=True, nullable=False),
    Column("labels", "str", required=True),
    Column("value", "float", required=True, nullable=False),
)

# One row per cell x repeat: these identify a row of summary.csv.
CELL_KEY: tuple[str, ...] = ("scenario", "variant", "client", "users", "repeat")
# A threadpool sweep runs the same cell at several token counts (`__t<tokens>` in the cell id).
SWEEP_KEY: str = "threadpool_tokens"

STATUSES: frozenset[str] = frozenset({"ok", "failed"})
