"""cell.json as one typed record: what the orchestrator writes and the analysis reads back.

`loadtests` builds a `CellResult` for every cell it runs and writes it with `dump()`; `analysis`
(and `loadtests --resume`) read it with `CellResult.load()`. One class on both sides, so a field
cannot be written under one name and read under another. The file carries `schema_version`
(`contract.CELL_SCHEMA_VERSION`); one without it is version 1 (every run before the field
existed, the committed references among them), read by the same class: version 2 only added
fields, each with a default. `results/README.md` ("Schema versions") says what changed.

Unknown top-level keys are an error (a typo, or a file from a newer lab, is named, not dropped).
`metrics`, `judged` and `mechanisms` declare every key the lab writes; a cell being written is
built with `new()`, which refuses an undeclared key, while a file read back keeps one (an older
lab's) beside the declared ones rather than refuse the run. The sections whose keys grow with the
method (`settings`, `locust`, the probe's facts) stay dictionaries, typed at their use.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract import CELL_SCHEMA_VERSION


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Open(BaseModel):
    # Sections written by several versions: a known key is typed; read back, another one is kept
    # as is (`model_extra`), written by the lab (`new`), it is an error.
    model_config = ConfigDict(frozen=True, extra="allow")

    @classmethod
    def new(cls, values: Mapping[str, Any]) -> Self:
        """The section of a cell being written: ValueError on a key it does not declare, so a
        key cannot be written under one name and read under another."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: undeclared {', '.join(unknown)} (declare it in contract/cell.py)"
            )
        return cls.model_validate(dict(values))


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
    `contract.apply_sample_rule`), steadiness and completion gaps (loadtests/summary.py
    `summarize_requests`, and `open_loop_metrics` for a rate cell). `results/README.md`
    (`summary.csv`) says what each is; a key a version did not write reads as None."""

    # Main requests that started in the window, and their outcomes (they add up to `requests`).
    requests: int | None = None
    ok: int | None = None
    errors: int | None = None
    timeouts: int | None = None
    censored: int | None = None
    # errors + timeouts.
    failures: int | None = None
    # ok requests that started in the window per second (a rate cell: some answered in the drain).
    rps: float | None = None
    # ok requests that ended inside the window per second: what the server served (schema 2).
    served_rps: float | None = None
    # ok + censored requests of the window: the count the latency percentiles stand on (schema 2).
    latency_n: int | None = None
    # Latency percentiles of ok and censored requests; None where latency_n does not support one.
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    # The same percentiles exact, whatever the sample count (schema 2).
    p50_ms_raw: float | None = None
    p90_ms_raw: float | None = None
    p95_ms_raw: float | None = None
    p99_ms_raw: float | None = None
    # Smallest censored age: a percentile at or above it is a lower bound.
    censored_min_ms: float | None = None
    # Latency of the failed (error, timeout) requests.
    error_p50_ms: float | None = None
    error_max_ms: float | None = None
    # chat_stream: time-to-first-token marks of the window, their count (schema 2) and percentiles.
    ttft_n: int | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    ttft_p50_ms_raw: float | None = None
    ttft_p99_ms_raw: float | None = None
    # chat_stream: inter-token gaps of the window, their count (schema 2) and percentiles.
    itl_n: int | None = None
    itl_p50_ms: float | None = None
    itl_p99_ms: float | None = None
    itl_p50_ms_raw: float | None = None
    itl_p99_ms_raw: float | None = None
    # mixed: the /hello probe user's requests in flight during the window, and their latency.
    probe_requests: int | None = None
    probe_p50_ms: float | None = None
    probe_p99_ms: float | None = None
    probe_max_ms: float | None = None
    probe_p50_ms_raw: float | None = None
    probe_p99_ms_raw: float | None = None
    # Requests with a Server-Timing header (schema 2), and the app's own time from it: app time
    # minus upstream and DB waits.
    overhead_n: int | None = None
    overhead_p50_ms: float | None = None
    overhead_p99_ms: float | None = None
    overhead_p50_ms_raw: float | None = None
    overhead_p99_ms_raw: float | None = None
    # Little's law (closed loop only): users / (arrival rate x mean latency), and within tolerance.
    steady: bool | None = None
    little_ratio: float | None = None
    # Longest time without a completion, from the cell's start to the end of the drain.
    gap_max_s: float | None = None
    # Seconds from the last completion to the cell's end.
    since_last_completion_s: float | None = None
    # Requests still in flight when the cell ended (censored, warm-up included).
    in_flight_at_end: int | None = None
    # Users that had an answer when the window opened (closed loop).
    users_in_loop: int | None = None
    # Requests that started before the window and were still waiting at its end.
    starved: int | None = None
    # Rate cells only: the arrivals the schedule held in the window, those sent in it, sent per
    # second of window, p99 of the send lag, and whether every connection (slot) was busy.
    scheduled: int | None = None
    sent: int | None = None
    achieved_rps: float | None = None
    send_lag_p99_ms: float | None = None
    slots_full: bool | None = None


class CellJudged(_Open):
    """The cell as a whole: whether it stalled and why, its thread diagnosis, CPU per request."""

    # No completion for stall_s with requests in flight, and the longest gap in words.
    stalled: bool = False
    stall_evidence: str = ""
    # What the server's worker threads waited for, from the last py-spy dump ("" without one).
    threads: str = ""
    # That dump's busy threads per kind of wait.
    thread_waits: dict[str, int] | None = None
    # Probe cells (loadtests/assess.py `thread_dump`): that dump's busy worker threads per
    # innermost frame of the app's own code ({"file:line call": n}), and the event loop
    # thread's frame there ("file:line call"); what analysis/judge/probe.py names as the site.
    thread_sites: dict[str, int] | None = None
    loop_site: str | None = None
    # Server CPU milliseconds per ok request over the window.
    cpu_ms_per_req: float | None = None
    # Mean latency the mock upstream served during the cell, and its drift from the configured.
    upstream_served_ms: float | None = None
    upstream_drift_ms: float | None = None
    # Distributed cells (`--locust-hosts`): one entry per load worker, open-ended as
    # loadtests/distributed.py `worker_cpu` writes it (`host`, `index`, `rows`, `cpu_pct`,
    # `host_cpu_pct`, `host_is_here`), and the Locust master's own CPU (% of one core here).
    load_hosts: list[dict[str, Any]] | None = None
    load_master_pct: float | None = None


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
    # Scrapes of /metrics that failed during the cell.
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
