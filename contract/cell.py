"""cell.json as one typed record: what the orchestrator writes and the analysis reads back.

`loadtests` builds a `CellResult` for every cell it runs and writes it with `dump()`; `analysis`
(and `loadtests --resume`) read it with `CellResult.load()`. One class on both sides, so a field
cannot be written under one name and read under another. The file carries `schema_version`
(`contract.CELL_SCHEMA_VERSION`); one without it is version 1 (every run before the field
existed, the committed references among them), read by the same class: version 2 only added
fields, each with a default. `results/README.md` ("Schema versions") says what changed.

Unknown top-level keys are an error (a typo, or a file from a newer lab, is named, not dropped).
The sections whose keys grow with the method (`settings`, `locust`, the probe's facts) stay
dictionaries, typed at their use.
"""

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract import CELL_SCHEMA_VERSION


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Open(BaseModel):
    # Sections written by several versions: a known key is typed, another one is kept as is.
    model_config = ConfigDict(frozen=True, extra="allow")


class CellCpu(_Record):
    """Mean and peak CPU over the window, % of one core, per process watched."""

    loadgen_pct: float | None = None
    loadgen_peak_pct: float | None = None
    upstream_pct: float | None = None
    upstream_peak_pct: float | None = None
    server_pct: float | None = None
    server_peak_pct: float | None = None
    db_pct: float | None = None
    db_peak_pct: float | None = None


class CellMetrics(_Open):
    """The window's requests: outcomes, throughput, percentiles (the sample rule applied:
    `contract.apply_sample_rule`), steadiness and completion gaps (loadtests/summary.py)."""

    requests: int | None = None
    ok: int | None = None
    errors: int | None = None
    timeouts: int | None = None
    censored: int | None = None
    failures: int | None = None
    rps: float | None = None
    served_rps: float | None = None
    latency_n: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    steady: bool | None = None
    little_ratio: float | None = None
    gap_max_s: float | None = None
    since_last_completion_s: float | None = None
    in_flight_at_end: int | None = None
    users_in_loop: int | None = None
    starved: int | None = None


class CellJudged(_Open):
    """The cell as a whole: whether it stalled and why, its thread diagnosis, CPU per request."""

    stalled: bool = False
    stall_evidence: str = ""
    threads: str = ""
    thread_waits: dict[str, int] | None = None
    cpu_ms_per_req: float | None = None
    upstream_served_ms: float | None = None
    upstream_drift_ms: float | None = None


class CellMechanisms(_Open):
    """The server's /metrics gauges over the window (loadtests/scrape.py)."""

    loop_lag_max_ms: float | None = None
    loop_lag_p99_ms: float | None = None
    threadpool_peak_in_use: float | None = None
    threadpool_peak_waiting: float | None = None
    http_pool_peak_active: float | None = None
    http_pool_peak_waiting: float | None = None
    db_pool_peak_checked_out: float | None = None
    server_rss_peak_mb: float | None = None
    scrape_failures: int | None = None


class CellResult(_Record):
    """One cell: what it was, how it was run, and what was measured (or why nothing was)."""

    schema_version: int = 1
    cell_id: str
    scenario: str
    variant: str
    client: str
    arm: str = ""
    users: int
    offered_rps: float | None = None
    repeat: int
    status: str
    reason: str = ""
    valid: bool = False
    invalid_reason: str = ""
    window_start: float | None = None
    window_end: float | None = None
    cut_off: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    pinning: dict[str, Any] = Field(default_factory=dict)
    db: str | None = None
    # The ASGI server and its options the cell's app ran under (schema 2; empty: uvicorn with
    # httptools and uvloop, as every run before).
    server: str = ""
    cpu: CellCpu = Field(default_factory=CellCpu)
    metrics: CellMetrics = Field(default_factory=CellMetrics)
    judged: CellJudged = Field(default_factory=CellJudged)
    mechanisms: CellMechanisms = Field(default_factory=CellMechanisms)
    command: list[str] = Field(default_factory=list)
    timings: dict[str, Any] | None = None
    locust: dict[str, Any] | None = None
    upstream_stats: dict[str, Any] | None = None
    server_log_tail: list[str] = Field(default_factory=list)
    wall_s: float | None = None
    # `sync-async-lab probe` cells only (schema 2): the route, the arm's settings and what the
    # in-process sampler saw holding the event loop (probe/README.md).
    probe: dict[str, Any] | None = None

    @classmethod
    def parse(cls, data: dict[str, Any], source: str = "cell.json") -> "CellResult":
        """A record from cell.json's data; ValueError naming `source` and the field when bad."""
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or not 1 <= version <= CELL_SCHEMA_VERSION:
            raise ValueError(
                f"{source}: schema_version {version!r} is not one this lab reads "
                f"(1 to {CELL_SCHEMA_VERSION}); written by a newer lab?"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{source}: `{where}`: {first['msg']}") from None

    @classmethod
    def load(cls, path: Path) -> "CellResult":
        """Read a cell.json; ValueError naming the file on any problem."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a JSON object")
        return cls.parse(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to cell.json (every field, defaults included)."""
        return self.model_dump(mode="json")

    def dump(self) -> str:
        """The cell.json text."""
        return json.dumps(self.to_dict(), indent=2)

    @property
    def stalled(self) -> bool:
        """Whether the cell stalled (no completion for the stall threshold)."""
        return self.judged.stalled

    @property
    def ok(self) -> bool:
        """Whether the cell has numbers (it did not fail)."""
        return self.status == "ok"
