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

SUMMARY_COLUMNS: tuple[Column, ...] = tuple(
    Column(
        name,
        cast(Kind, kind),
        required=name in REQUIRED,
        nullable=name not in NOT_NULL,
    )
    for name, kind in contract.SUMMARY_TYPES.items()
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

STATUSES: frozenset[str] = frozenset(contract.STATUSES)
