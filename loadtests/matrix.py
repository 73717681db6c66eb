"""The benchmark matrix: a TOML file plus CLI overrides, expanded into cells."""

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from loadtests.scenarios import CLIENTS, SCENARIOS, VARIANTS

# Seconds a cell costs beyond warm-up + window: server start and seed, Locust start and stop,
# collection. Measured on the 2-core reference machine; only used for the printed estimate.
CELL_OVERHEAD_S = 2.1
NO_CLIENT = "-"


@dataclass(frozen=True)
class Cell:
    """One point of the matrix: a scenario on a server variant at a user level, one repeat."""

    scenario: str
    variant: str
    client: str
    users: int
    repeat: int
    # Set only when the matrix sweeps threadpool tokens: then it is part of the id.
    tokens: int | None = None

    @property
    def cell_id(self) -> str:
        """Folder name, e.g. `chat__async-httpx__u050__r1` (see results/README.md)."""
        client = "none" if self.client == NO_CLIENT else self.client
        sweep = "" if self.tokens is None else f"__t{self.tokens:03d}"
        return f"{self.scenario}__{self.variant}-{client}__u{self.users:03d}{sweep}__r{self.repeat}"


@dataclass
class MatrixSpec:
    """What to run and how: every field may come from the TOML file or a CLI override."""

    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    # HTTP clients of the `async` variant on proxy scenarios; sync/blocking always use httpx.
    async_clients: list[str] = field(default_factory=lambda: ["httpx"])
    users: list[int] = field(default_factory=lambda: [1, 10, 50, 100, 200])
    repeats: int = 1
    duration_s: float = 10.0
    warmup_s: float = 3.0
    spawn_rate: float = 1000.0
    # Bound on the wait for requests in flight when the window closes; the rest count as cut off.
    grace_s: float = 15.0
    # Upstream latency model, sent per request as x-mock-* headers.
    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    chat_tokens: int = 1
    stream_tokens: int = 8
    cpu_ms: int = 2
    # One value, or several to sweep (each cell id then carries `__t<tokens>`).
    threadpool_tokens: int | list[int] = 40
    seed_rows: int = 10_000
    # Far above users x latency, so the blocking variant's queue is measured, not timed out.
    request_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        # TOML `2` and `2.0` alike: summary.csv types these columns as floats.
        for name in ("duration_s", "warmup_s", "grace_s"):
            setattr(self, name, float(getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError on unknown names or impossible values."""
        for kind, given, known in (
            ("scenario", self.scenarios, SCENARIOS),
            ("variant", self.variants, VARIANTS),
            ("client", self.async_clients, CLIENTS),
        ):
            unknown = [x for x in given if x not in known]
            if unknown or not given:
                raise ValueError(f"unknown or no {kind}s {unknown}; choose from {list(known)}")
        if not self.users or min(self.users) < 1:
            raise ValueError(f"user levels must be >= 1, got {self.users}")
        if min(self.token_levels) < 1:
            raise ValueError(f"threadpool tokens must be >= 1, got {self.threadpool_tokens}")
        if self.repeats < 1 or self.duration_s <= 0 or self.warmup_s < 0 or self.grace_s < 0:
            raise ValueError("repeats >= 1, duration_s > 0, warmup_s >= 0, grace_s >= 0")

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> "MatrixSpec":
        """Load a matrix file; `overrides` that are not None win over the file."""
        data = tomllib.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        if unknown := set(data) - known:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> "MatrixSpec":
        """A copy with the non-None overrides applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Plain data for manifest.json."""
        return asdict(self)

    @property
    def token_levels(self) -> list[int]:
        """Threadpool token counts to run (one unless sweeping)."""
        tokens = self.threadpool_tokens
        return list(tokens) if isinstance(tokens, list) else [tokens]

    def tokens_of(self, cell: Cell) -> int:
        """The threadpool tokens a cell's server runs with."""
        return self.token_levels[0] if cell.tokens is None else cell.tokens

    def clients_for(self, scenario: str, variant: str) -> list[str]:
        """HTTP clients that apply: several for `async` on proxy scenarios, else one or none."""
        if not SCENARIOS[scenario].proxy:
            return [NO_CLIENT]
        return list(self.async_clients) if variant == "async" else ["httpx"]

    def cells(self) -> list[Cell]:
        """Every cell, repeats outermost so each repeat is a full pass (interleaved repeats)."""
        sweep: list[int | None] = list(self.token_levels) if len(self.token_levels) > 1 else [None]
        return [
            Cell(scenario, variant, client, users, repeat, tokens)
            for repeat in range(1, self.repeats + 1)
            for scenario in self.scenarios
            for variant in self.variants
            for client in self.clients_for(scenario, variant)
            for tokens in sweep
            for users in self.users
        ]

    def tokens(self, scenario: str) -> int | None:
        """Output tokens a scenario asks the upstream for (None when it has no upstream)."""
        if not SCENARIOS[scenario].proxy:
            return None
        return self.stream_tokens if scenario == "chat_stream" else self.chat_tokens

    def upstream_latency_ms(self, scenario: str) -> float | None:
        """Configured upstream latency of one whole completion: ttft + itl x (tokens - 1)."""
        tokens = self.tokens(scenario)
        return None if tokens is None else self.ttft_ms + self.itl_ms * (tokens - 1)

    def drain_s(self, cell: Cell) -> float:
        """Expected wait for in-flight requests after the window, bounded by `grace_s`."""
        latency_s = (self.upstream_latency_ms(cell.scenario) or 0.0) / 1000
        if cell.variant == "blocking":
            # The blocked loop serves one upstream call at a time: each user waits for all others.
            latency_s *= cell.users
        return min(self.grace_s, latency_s)

    def cell_seconds(self, cell: Cell) -> float:
        """Estimated wall time of one cell."""
        return CELL_OVERHEAD_S + self.warmup_s + self.duration_s + self.drain_s(cell)

    def estimate_s(self, cells: list[Cell] | None = None) -> float:
        """Estimated wall time of `cells` (default: all of them)."""
        return sum(self.cell_seconds(c) for c in (self.cells() if cells is None else cells))
