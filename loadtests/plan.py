"""One cell, resolved: which server to start and how, which load to run, what to record.

A `CellPlan` is everything `loadtests.measure` needs to run one cell, with no matrix left in it:
the lab's matrix makes one from a `Cell` and its `MatrixSpec` (`plan_cell`), and
`sync-async-lab probe` makes its own for a user's app. Pure: nothing here starts a process.
"""

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import CLIENTS, DEFAULT_SERVER, SERVER_ENV
from loadtests import postgres
from loadtests.context import RunContext
from loadtests.distributed import master_options
from loadtests.locust_runner import Clock, locust_command
from loadtests.matrix import Cell, MatrixSpec
from loadtests.process import server_command
from loadtests.scenarios import Scenario
from servers import db
from servers.settings import Settings

PORT = "{port}"
# The address the server listens on: 127.0.0.1, or the one load hosts reach this machine at.
BIND = "{bind}"


@dataclass(frozen=True)
class ServerPlan:
    """How to start a cell's server: its command (`{port}` marks the port), environment, and
    the routes the orchestrator polls."""

    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready_path: str = "/ready"
    metrics_path: str = "/metrics"
    # The ASGI server (contract.SERVERS), recorded as cell.json and summary `server`.
    name: str = DEFAULT_SERVER
    # Files the server leaves that the cell deletes once it is over (its SQLite database).
    scratch: tuple[Path, ...] = ()

    def argv(self, port: int, bind: str = "127.0.0.1") -> list[str]:
        """The command line for `port`, listening on `bind`."""
        return [part.replace(PORT, str(port)).replace(BIND, bind) for part in self.command]


@dataclass(frozen=True)
class CellPlan:
    """A cell with everything resolved: identity, server, load, clock, what to record."""

    cell: Cell
    scenario: Scenario
    server: ServerPlan
    locust_options: dict[str, Any]
    clock: Clock
    spawn_rate: float
    stall_s: float
    dump_after_s: float
    tokens: int
    upstream_latency_ms: float | None = None
    # Recorded in cell.json `settings` (the matrix's, or the probe's).
    settings: dict[str, Any] = field(default_factory=dict)
    db: str | None = None
    # Recorded in cell.json `probe` (probe cells only).
    probe: dict[str, Any] | None = None
    # The user's app folder (probe cells): thread dumps name the frames of its code.
    app_root: Path | None = None

    @property
    def cell_id(self) -> str:
        """The cell's folder name."""
        return self.cell.cell_id

    @property
    def target_users(self) -> int:
        """Users Locust must reach: the cell's level plus the scenario's extra (probe) users."""
        return self.cell.users + self.scenario.extra_users

    def locust_command(
        self,
        ctx: RunContext,
        host: str,
        server_pid: int | None = None,
        start_file: Path | None = None,
        master_port: int | None = None,
    ) -> list[str]:
        """The Locust command line (with the server's pid, it can dump its threads; with a
        start file, it waits for it before the load; with load hosts, the master's, on
        `master_port`)."""
        options = dict(self.locust_options)
        if server_pid is not None and self.dump_after_s:
            options.update(server_pid=server_pid, dump_after=self.dump_after_s)
        if start_file is not None:
            options["start_file"] = start_file
        return locust_command(
            self.scenario,
            host=host,
            users=self.cell.users,
            spawn_rate=self.spawn_rate,
            clock=self.clock,
            cell_dir=ctx.out / self.cell_id,
            options=options,
            processes=ctx.locust_processes,
            python=ctx.python,
            master=(
                master_options(ctx.load_hosts.workers, master_port or 0)
                if ctx.load_hosts is not None
                else None
            ),
        )


# --- The lab's own matrix ------------------------------------------------------------------------


def server_env(cell: Cell, spec: MatrixSpec, ctx: RunContext) -> dict[str, str]:
    """LAB_* settings of a cell's server: fresh database, its HTTP client, the run's upstream."""
    values: dict[str, Any] = {
        "db_path": ctx.scratch / f"{cell.cell_id}.sqlite3",
        "db_reset": "true",
        "db_seed_rows": spec.seed_rows,
        # The proxies' own HTTP timeouts stay at their defaults: they are part of what is measured.
        "threadpool_tokens": spec.tokens_of(cell),
        **spec.settings_of(spec.arm_of(cell)),
    }
    values = postgres.resolve(values, ctx.db_url)
    if ctx.upstream_url:
        values["upstream_url"] = ctx.upstream_url
    if cell.client in CLIENTS:
        values["http_client"] = cell.client
    return {SERVER_ENV[k]: _env_text(v) for k, v in values.items()}


def env_setting(env: dict[str, str], name: str) -> Any:
    """A server setting as a cell's server reads it: its LAB_* value, else the orchestrator's own
    environment (servers inherit it), else the default."""
    key = SERVER_ENV[name]
    return env.get(key, os.environ.get(key, Settings.model_fields[name].default))


def _env_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def observed(env: dict[str, str]) -> bool:
    """Whether the cell's server runs its /metrics monitor and Server-Timing."""
    return env.get(SERVER_ENV["observe"], "true") != "false"


def locust_options(cell: Cell, spec: MatrixSpec) -> dict[str, Any]:
    """The lab's own Locust options for a cell (see locustfiles/common.py)."""
    options: dict[str, Any] = {
        "max_tokens": spec.tokens(cell.scenario) or 1,
        "ttft_ms": spec.ttft_ms,
        "itl_ms": spec.itl_ms,
        "cpu_ms": spec.cpu_ms,
        "seed_rows": spec.seed_rows,
        "db_wait_ms": spec.db_wait_ms,
        "request_timeout": spec.request_timeout_s,
    }
    if cell.rate is not None:
        options.update(rate=cell.rate, arrivals=spec.arrivals, arrival_seed=arrival_seed(cell))
    return options


def arrival_seed(cell: Cell) -> int:
    """The rate schedule's seed: the same cell id gives the same arrivals in every run."""
    return zlib.crc32(cell.cell_id.encode())


def cell_settings(cell: Cell, spec: MatrixSpec, env: dict[str, str]) -> dict[str, Any]:
    """The settings recorded in cell.json."""
    return {
        "duration_s": spec.duration_s,
        "window_max_s": spec.clock().window_max_s,
        "sample_target": spec.sample_target,
        "warmup_s": spec.warmup_s,
        "warmup_max_s": spec.warmup_max_s,
        "spawn_rate": spec.spawn_rate,
        "grace_s": spec.grace_s,
        "stall_s": spec.stall_s,
        "threadpool_tokens": spec.tokens_of(cell),
        **{name: int(env_setting(env, name)) for name in ("db_pool_size", "db_max_overflow")},
        "rate_slots": spec.rate_slots if cell.rate is not None else None,
        "observe": observed(env),
        "server_timeouts_s": spec.server_timeouts(spec.arm_of(cell)),
        "upstream_latency_ms": spec.upstream_latency_ms(cell.scenario),
        **locust_options(cell, spec),
    }


def db_driver(env: dict[str, str], variant: str) -> str:
    """The database and driver a cell's server runs (`contract.DB_DRIVERS`)."""
    url, driver = env_setting(env, "db_url"), env_setting(env, "db_async_driver")
    return db.driver(url, driver, sync=variant != "async")


def plan_cell(cell: Cell, spec: MatrixSpec, ctx: RunContext) -> CellPlan:
    """The plan of one cell of the lab's matrix: `python -m servers <variant> [--server NAME]`
    with its env."""
    env = server_env(cell, spec, ctx)
    command = tuple(server_command(cell.variant, PORT, ctx.python, cell.server, BIND))
    database = env[SERVER_ENV["db_path"]]
    scratch = tuple(Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm", "-journal"))
    return CellPlan(
        cell=cell,
        scenario=ctx.scenarios[cell.scenario],
        server=ServerPlan(command, env, scratch=scratch, name=cell.server),
        locust_options=locust_options(cell, spec),
        clock=spec.clock(),
        spawn_rate=spec.spawn_rate,
        stall_s=spec.stall_s,
        dump_after_s=spec.dump_after_s,
        tokens=spec.tokens_of(cell),
        upstream_latency_ms=spec.upstream_latency_ms(cell.scenario),
        settings=cell_settings(cell, spec, env),
        db=db_driver(env, cell.variant),
    )


def cell_command(
    cell: Cell, spec: MatrixSpec, ctx: RunContext, host: str, server_pid: int | None = None
) -> list[str]:
    """The Locust command line of a matrix cell (with the server's pid, it can dump threads)."""
    return plan_cell(cell, spec, ctx).locust_command(ctx, host, server_pid)
