"""The benchmark matrix: a TOML file plus CLI overrides, expanded into cells."""

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from contract import (
    ARRIVALS,
    CLIENTS,
    DEFAULT_SERVER,
    NO_CLIENT,
    SERVER_ENV,
    SERVER_TIMEOUTS,
    SERVERS,
    STALL_MARGIN_S,
    SYNC_CLIENTS,
    VARIANTS,
)
from contract.slo import Slo, parse_slo
from loadtests import manifest
from loadtests.locust_runner import Clock
from loadtests.postgres import LAB_CLUSTER
from loadtests.scenarios import SCENARIOS
from servers.settings import Settings

# Seconds a cell costs beyond warm-up + window: server start and seed, Locust start and stop,
# collection. Measured on the 2-core reference machine; only used for the printed estimate.
CELL_OVERHEAD_S = 2.1


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
    # A named arm (matrix `[[arms]]`): extra server settings; part of the id when set.
    arm: str = ""
    # Rate mode (open loop): arrivals per second; `users` is then the cap on requests in flight.
    rate: int | None = None
    # The ASGI server (contract.SERVERS); part of the id only when it is not the default, so the
    # ids of runs before the server dimension are unchanged.
    server: str = DEFAULT_SERVER

    @property
    def cell_id(self) -> str:
        """Folder name, e.g. `chat__async-httpx__u050__r1`, `chat__sync-httpx__rps0400__r1`,
        `chat__sync-httpx__u200__sv-granian__r1`."""
        client = "none" if self.client == NO_CLIENT else self.client
        sweep = "" if self.tokens is None else f"__t{self.tokens:03d}"
        server = "" if self.server == DEFAULT_SERVER else f"__sv-{self.server}"
        arm = f"__{self.arm}" if self.arm else ""
        load = f"u{self.users:03d}" if self.rate is None else f"rps{self.rate:04d}"
        return (
            f"{self.scenario}__{self.variant}-{client}__{load}{sweep}{server}{arm}__r{self.repeat}"
        )


@dataclass(frozen=True)
class Arm:
    """Cells run again with extra server settings, e.g. the observer effect (`observe=false`)."""

    name: str
    env: dict[str, Any]
    scenarios: list[str]
    variants: list[str]
    users: list[int]
    clients: list[str] = field(default_factory=lambda: ["httpx", NO_CLIENT])

    @classmethod
    def parse(cls, data: dict[str, Any]) -> "Arm":
        """An arm from its TOML table; unknown keys and settings are errors."""
        known = {f.name for f in fields(cls)}
        if unknown := set(data) - known:
            raise ValueError(f"arm {data.get('name')!r}: unknown keys {sorted(unknown)}")
        arm = cls(**data)
        if not arm.name.isidentifier():
            raise ValueError(f"arm name {arm.name!r} must be a plain word (it goes in cell ids)")
        check_server_env(arm.env)
        return arm


def check_server_env(env: dict[str, Any]) -> None:
    """Raise ValueError unless every key is a server setting the orchestrator may set."""
    unknown = set(env) - set(SERVER_ENV)
    if unknown:
        raise ValueError(f"unknown server settings {sorted(unknown)}; known: {sorted(SERVER_ENV)}")


@dataclass
class MatrixSpec:
    """What to run and how: every field may come from the TOML file or a CLI override."""

    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    # HTTP clients on proxy scenarios: of the `async` variant, and of `sync` and `blocking`.
    async_clients: list[str] = field(default_factory=lambda: ["httpx"])
    sync_clients: list[str] = field(default_factory=lambda: ["httpx"])
    users: list[int] = field(default_factory=lambda: [1, 10, 50, 100, 200])
    # The ASGI servers every cell runs under (contract.SERVERS), innermost: each cell of a pass
    # runs on each server one after the other.
    servers: list[str] = field(default_factory=lambda: [DEFAULT_SERVER])
    # Rate mode (open loop): offered arrival rates, req/s. Without `slo`, every scenario x style
    # runs at each rate; with it, they are the ladder of the capacity search (loadtests/search.py).
    rates: list[int] = field(default_factory=list)
    # Scenarios that run the rates, among `scenarios` (empty: every scenario of the matrix).
    rate_scenarios: list[str] = field(default_factory=list)
    # `p99=500ms,errors=1%` (contract.slo): search each scenario x style's capacity at it.
    slo: str = ""
    # After the ladder brackets the capacity, halve the bracket this many times.
    bisect_steps: int = 3
    # Arrival process of rate cells (contract.ARRIVALS) and the cap on their requests in flight:
    # the connections the load generator holds (a request due while all are busy waits for one,
    # and that wait counts in its latency).
    arrivals: str = "poisson"
    rate_slots: int = 500
    repeats: int = 1
    # Main cells that run in another number of passes than `repeats`: "scenario/variant" or
    # "scenario/variant/users" -> passes (the passes beyond `repeats` hold only these cells).
    repeats_of: dict[str, int] = field(default_factory=dict)
    # The window lasts at least duration_s, then closes once `sample_target` requests that
    # started in it have completed, or at window_max_s (0: exactly duration_s).
    duration_s: float = 10.0
    window_max_s: float = 0.0
    sample_target: int = 0
    warmup_s: float = 3.0
    # The warm-up goes on until every user has completed a request, up to this (0: no wait).
    warmup_max_s: float = 0.0
    spawn_rate: float = 1000.0
    # Bound on the drain: the wait for requests in flight when the window closes; those still in
    # flight then are censored.
    grace_s: float = 40.0
    # No completion for this long with requests in flight: a stall (the drain stops there). Must
    # exceed every server timeout (server_env or the servers' defaults) by STALL_MARGIN_S.
    stall_s: float = 35.0
    # No completion for this long with requests in flight: py-spy dumps the server's threads
    # (threads.txt; again at stall_s: threads-stall.txt), summarised in cell.json `threads`.
    # Under the proxies' 5 s upstream timeout, so a stall those timeouts break up is seen too.
    # 0 turns it off.
    dump_after_s: float = 4.0
    # Server settings (servers.settings field names) applied to every cell, recorded per cell.
    server_env: dict[str, Any] = field(default_factory=dict)
    # Named extra arms ([[arms]] tables); their cells run in every pass after the main cells.
    arms: list[Arm] = field(default_factory=list)
    # Cells left out of the main matrix: "scenario/variant" or "scenario/variant/users";
    # "scenario/variant/rps" leaves out that pair's rate cells (and capacity search).
    skip: list[str] = field(default_factory=list)
    # Upstream latency model, sent per request as x-mock-* headers.
    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    chat_tokens: int = 1
    stream_tokens: int = 8
    cpu_ms: int = 2
    # One value, or several to sweep (each cell id then carries `__t<tokens>`).
    threadpool_tokens: int | list[int] = 40
    seed_rows: int = 10_000
    # items_wait: how long each item query waits in the database (`pg_sleep`).
    db_wait_ms: int = 20
    # Far above users x latency, so the blocking variant's queue is measured, not timed out.
    request_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        # TOML `2` and `2.0` alike: summary.csv types these columns as floats.
        for name in (
            "duration_s",
            "window_max_s",
            "warmup_s",
            "warmup_max_s",
            "grace_s",
            "stall_s",
            "dump_after_s",
        ):
            setattr(self, name, float(getattr(self, name)))
        self.arms = [a if isinstance(a, Arm) else Arm.parse(a) for a in self.arms]
        self.validate()

    def validate(self) -> None:
        """Raise ValueError on unknown names or impossible values."""
        for kind, given, known in (
            ("scenario", self.scenarios, SCENARIOS),
            ("variant", self.variants, VARIANTS),
            ("client", self.async_clients, CLIENTS),
            ("sync client", self.sync_clients, SYNC_CLIENTS),
            ("server", self.servers, SERVERS),
        ):
            unknown = [x for x in given if x not in known]
            if unknown or not given:
                raise ValueError(f"unknown or no {kind}s {unknown}; choose from {list(known)}")
        if len(set(self.servers)) != len(self.servers):
            raise ValueError(f"servers must be named once each, got {self.servers}")
        if self.slo and len(self.servers) > 1:
            raise ValueError(
                f"slo {self.slo!r} with servers {self.servers}: a capacity search runs on one "
                "server (capacity.csv has no server column); give one"
            )
        if (not self.users and not self.rates) or (self.users and min(self.users) < 1):
            raise ValueError(f"user levels must be >= 1 (or give rates), got {self.users}")
        if self.rates and min(self.rates) < 1:
            raise ValueError(f"rates must be whole req/s >= 1, got {self.rates}")
        if self.rates != sorted(set(self.rates)):
            raise ValueError(f"rates must rise, each once: got {self.rates}")
        if self.slo:
            self.slo_spec()  # ValueError on a bad SLO
            if not self.rates:
                raise ValueError(f"slo {self.slo!r} needs rates: the search's ladder")
        if unknown := [x for x in self.rate_scenarios if x not in SCENARIOS]:
            raise ValueError(f"unknown rate_scenarios {unknown}; choose from {list(SCENARIOS)}")
        if self.arrivals not in ARRIVALS:
            raise ValueError(f"arrivals {self.arrivals!r}: choose from {list(ARRIVALS)}")
        if self.rate_slots < 1 or self.bisect_steps < 0:
            raise ValueError("rate_slots >= 1, bisect_steps >= 0")
        if min(self.token_levels) < 1:
            raise ValueError(f"threadpool tokens must be >= 1, got {self.threadpool_tokens}")
        if self.repeats < 1 or self.duration_s <= 0 or self.warmup_s < 0 or self.grace_s < 0:
            raise ValueError("repeats >= 1, duration_s > 0, warmup_s >= 0, grace_s >= 0")
        if self.window_max_s and self.window_max_s < self.duration_s:
            raise ValueError(f"window_max_s {self.window_max_s} < duration_s {self.duration_s}")
        check_server_env(self.server_env)
        if self.grace_s < self.stall_s:
            raise ValueError(f"grace_s {self.grace_s:g} < stall_s {self.stall_s:g}: no stall seen")
        for kind, rules in (("skip", self.skip), ("repeats_of", list(self.repeats_of))):
            for rule in rules:
                parts = rule.split("/")
                if (
                    not 2 <= len(parts) <= 3
                    or parts[0] not in SCENARIOS
                    or parts[1] not in VARIANTS
                ):
                    raise ValueError(
                        f"{kind} {rule!r}: write scenario/variant or scenario/variant/users"
                    )
        if any(not isinstance(n, int) or n < 1 for n in self.repeats_of.values()):
            raise ValueError(f"repeats_of: passes must be whole numbers >= 1: {self.repeats_of}")
        longest = max(self.server_timeouts().values())
        if self.stall_s < longest + STALL_MARGIN_S:
            raise ValueError(
                f"stall_s {self.stall_s:g} must exceed every server timeout by "
                f"{STALL_MARGIN_S:g} s (longest: {longest:g} s, {self.server_timeouts()}), "
                "or a slow error would be called a stall"
            )

    def needs_lab_cluster(self, cells: list[Cell], searches: bool = False) -> bool:
        """Whether a cell to run (or a capacity search) uses the run's own PostgreSQL
        (`db_url = "lab"`)."""
        settings = [self.settings_of(self.arm_of(c)) for c in cells]
        if searches:  # the searches' rate cells run the main matrix's settings
            settings.append(self.settings_of())
        return any(s.get("db_url") == LAB_CLUSTER for s in settings)

    def check_target(self, target: str | None) -> None:
        """ValueError when the matrix cannot run against a server the lab did not start."""
        if target and self.needs_lab_cluster(self.cells(), bool(self.searches())):
            raise ValueError(
                "db_url = 'lab' needs the lab's own servers: drop --target or that arm"
            )

    def server_settings(self, python: str) -> Any:
        """The servers' effective settings with this matrix's first token count (manifest)."""
        return manifest.server_settings(
            python, {"LAB_THREADPOOL_TOKENS": str(self.token_levels[0])}
        )

    def slo_spec(self) -> Slo | None:
        """The parsed SLO (None without one)."""
        return parse_slo(self.slo) if self.slo else None

    def settings_of(self, arm: "Arm | None" = None) -> dict[str, Any]:
        """The server settings the matrix sets for a cell of `arm` (None: the main matrix)."""
        return {**self.server_env, **(arm.env if arm else {})}

    def server_timeouts(self, arm: "Arm | None" = None) -> dict[str, float]:
        """The server's timeouts in seconds as the cells run them (matrix value or default)."""
        env = self.settings_of(arm)
        return {
            name: float(env.get(name, Settings.model_fields[name].default))
            for name in SERVER_TIMEOUTS
        }

    def clock(self) -> Clock:
        """The timeline every cell runs."""
        return Clock(
            warmup_s=self.warmup_s,
            window_min_s=self.duration_s,
            window_max_s=max(self.window_max_s, self.duration_s),
            sample_target=self.sample_target,
            grace_s=self.grace_s,
            stall_s=self.stall_s,
            warmup_max_s=self.warmup_max_s,
        )

    def skipped(self, scenario: str, variant: str, users: int | str) -> bool:
        """Whether the matrix leaves this cell out (see `skip`; rate cells: users `rps`)."""
        return any(
            rule in (f"{scenario}/{variant}", f"{scenario}/{variant}/{users}") for rule in self.skip
        )

    def repeats_for(self, scenario: str, variant: str, users: int) -> int:
        """The passes a main closed-loop cell runs in: `repeats`, unless `repeats_of` names it
        (its scenario/variant/users rule first, then its scenario/variant one)."""
        for rule in (f"{scenario}/{variant}/{users}", f"{scenario}/{variant}"):
            if rule in self.repeats_of:
                return self.repeats_of[rule]
        return self.repeats

    @property
    def passes(self) -> int:
        """How many passes the matrix runs: `repeats`, or more where `repeats_of` asks."""
        return max([self.repeats, *self.repeats_of.values()])

    def arm_of(self, cell: Cell) -> "Arm | None":
        """The arm a cell belongs to (None for the main matrix)."""
        return next((a for a in self.arms if a.name == cell.arm), None)

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> "MatrixSpec":
        """Load a matrix file; `overrides` that are not None win over the file."""
        data = tomllib.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        if unknown := set(data) - known:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

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
        """HTTP clients that apply: on proxy scenarios those of the variant's style, else none."""
        if not SCENARIOS[scenario].proxy:
            return [NO_CLIENT]
        return list(self.async_clients if variant == "async" else self.sync_clients)

    def cells(self) -> list[Cell]:
        """Every cell, repeats outermost so each repeat is a full pass (interleaved repeats),
        servers innermost (each cell of a pass on every server, one after the other)."""
        sweep: list[int | None] = list(self.token_levels) if len(self.token_levels) > 1 else [None]
        cells = []
        for repeat in range(1, self.passes + 1):
            cells += [
                Cell(scenario, variant, client, users, repeat, tokens, server=server)
                for scenario in self.scenarios
                for variant in self.variants
                for client in self.clients_for(scenario, variant)
                for tokens in sweep
                for users in self.users
                if not self.skipped(scenario, variant, users)
                and repeat <= self.repeats_for(scenario, variant, users)
                for server in self.servers
            ]
            if repeat > self.repeats:
                continue
            if not self.slo:
                cells += [
                    self.rate_cell(scenario, variant, client, rate, repeat, server=server)
                    for scenario in self.rate_scenario_list()
                    for variant in self.variants
                    for client in self.clients_for(scenario, variant)
                    for rate in self.rates
                    if not self.skipped(scenario, variant, "rps")
                    for server in self.servers
                ]
            cells += [
                Cell(scenario, variant, client, users, repeat, arm=arm.name, server=server)
                for arm in self.arms
                for scenario in arm.scenarios
                for variant in arm.variants
                for client in self.clients_for(scenario, variant)
                if client in arm.clients
                for users in arm.users
                for server in self.servers
            ]
        return cells

    def rate_cell(
        self,
        scenario: str,
        variant: str,
        client: str,
        rate: int,
        repeat: int,
        arm: str = "",
        server: str | None = None,
    ) -> Cell:
        """The rate-mode cell offering `rate` req/s (on the matrix's first server unless
        `server` says: a capacity search runs on one)."""
        return Cell(
            scenario,
            variant,
            client,
            self.rate_slots,
            repeat,
            arm=arm,
            rate=rate,
            server=server or self.servers[0],
        )

    def rate_scenario_list(self) -> list[str]:
        """The scenarios that run rate cells or searches."""
        return [s for s in self.scenarios if not self.rate_scenarios or s in self.rate_scenarios]

    def searches(self) -> list[tuple[str, str, str, int]]:
        """(scenario, variant, client, repeat) of every capacity search, passes outermost."""
        if not self.slo:
            return []
        return [
            (scenario, variant, client, repeat)
            for repeat in range(1, self.repeats + 1)
            for scenario in self.rate_scenario_list()
            for variant in self.variants
            for client in self.clients_for(scenario, variant)
            if not self.skipped(scenario, variant, "rps")
        ]

    def search_cells_expected(self) -> int:
        """Cells one search is expected to take: half the ladder, then the bisection."""
        return len(self.rates) // 2 + 1 + self.bisect_steps

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
        """Estimated wall time of one cell (a window closing on its sample target: halfway)."""
        longest = self.clock().window_max_s
        window = (self.duration_s + longest) / 2 if self.sample_target else longest
        if cell.rate is not None and self.sample_target:
            # An open loop reaches its sample target at the offered rate.
            window = min(longest, max(self.duration_s, self.sample_target / cell.rate))
        return CELL_OVERHEAD_S + self.warmup_s + window + self.drain_s(cell)

    def estimate_s(self, cells: list[Cell] | None = None) -> float:
        """Estimated wall time of `cells` (default: all of them and the searches)."""
        fixed = sum(self.cell_seconds(c) for c in (self.cells() if cells is None else cells))
        return fixed + sum(self.search_seconds(*s) for s in self.searches())

    def search_seconds(self, scenario: str, variant: str, client: str, repeat: int) -> float:
        """Estimated wall time of one capacity search (its cells at the ladder's middle rate)."""
        if not self.rates:
            return 0.0
        middle = self.rates[len(self.rates) // 2]
        cell = self.rate_cell(scenario, variant, client, middle, repeat)
        return self.search_cells_expected() * self.cell_seconds(cell)
