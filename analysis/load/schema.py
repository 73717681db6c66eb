"""Column specifications of the files a run folder holds, typed from `contract`."""

from dataclasses import dataclass
from typing import Literal, cast

import contract

Kind = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True)
class Column:
    """One column: its name, type, whether the file must have it and whether it may be empty."""

    name: str
    kind: Kind
    required: bool = False
    nullable: bool = True
    # False for columns beyond the contract: their absence is normal, not worth a warning.
    contract: bool = True


# The columns no chart or verdict can do without; every other column of the contract is optional
# so that a run from an older orchestrator still reports (the report lists what it lacked).
REQUIRED: frozenset[str] = frozenset(
    {"scenario", "variant", "client", "status", "cell_id", "users", "repeat", "valid"}
    | {"rps", "p50_ms", "p99_ms"}
)
# Required and never empty: the keys of a row and its status.
NOT_NULL: frozenset[str] = REQUIRED - {"rps", "p50_ms", "p99_ms"}

# Rate mode (open loop) only: a run without rate cells (every run before issue 10) lacks them,
# which is normal, so their absence is not listed as missing. A row with `offered_rps` set is a
# rate cell; the closed-loop analysis never sees it (load.run.Run.rates).
RATE_ONLY: frozenset[str] = frozenset(
    {"offered_rps", "achieved_rps", "send_lag_p99_ms", "slots_full"}
)
OFFERED = "offered_rps"

SUMMARY_COLUMNS: tuple[Column, ...] = tuple(
    Column(
        name,
        cast(Kind, kind),
        required=name in REQUIRED,
        nullable=name not in NOT_NULL,
        contract=name not in RATE_ONLY,
    )
    for name, kind in contract.SUMMARY_TYPES.items()
)

# capacity.csv (one row per SLO capacity search): every column required, as one orchestrator
# writes them all; empty only where the contract says a value may be absent.
CAPACITY_NULLABLE: frozenset[str] = frozenset(
    {"arm", "capacity_rps", "limit_rps", "limit_reason", "p99_at_capacity_ms", "cell_ids"}
)
CAPACITY_COLUMNS: tuple[Column, ...] = tuple(
    Column(name, cast(Kind, kind), required=True, nullable=name in CAPACITY_NULLABLE)
    for name, kind in contract.CAPACITY_TYPES.items()
)

REQUESTS_COLUMNS: tuple[Column, ...] = (
    # When the request started (epoch s): what places it in the cell's window.
    Column("ts", "float"),
    Column("kind", "str", required=True, nullable=False),
    Column("latency_ms", "float", required=True, nullable=False),
    Column("ok", "bool", required=True, nullable=False),
    # Newer runs: one of contract.OUTCOMES per request row (ok, error, timeout, censored).
    Column("outcome", "str"),
    # The server's Server-Timing, on proxy and DB routes only.
    *(Column(n, "float") for n in ("app_ms", "upstream_ms", "db_ms")),
    # Rate mode: how late the request was sent after its intended start (`ts`).
    Column("lag_ms", "float", contract=False),
)

METRICS_COLUMNS: tuple[Column, ...] = (
    Column("ts", "float", required=True, nullable=False),
    Column("metric", "str", required=True, nullable=False),
    Column("labels", "str", required=True),
    Column("value", "float", required=True, nullable=False),
)

# Booleans whose blank (or absent) value means "not checked": read as True, so that a run without
# them flags nothing it did not measure (the report lists the absent columns).
BLANK_TRUE: frozenset[str] = frozenset({"steady", "observe"})

# One row per cell x repeat: these identify a row of summary.csv (`arm` is "" by default).
CELL_KEY: tuple[str, ...] = ("scenario", "variant", "client", "arm", "users", "repeat")
# A threadpool sweep runs the same cell at several token counts (`__t<tokens>` in the cell id).
SWEEP_KEY: str = "threadpool_tokens"
# A run over several ASGI servers runs the same cell under each (`__sv-<server>` in the cell id).
SERVER_KEY: str = "server"

STATUSES: frozenset[str] = frozenset(contract.STATUSES)
