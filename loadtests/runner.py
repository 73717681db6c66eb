"""Run cells and matrices: a fresh server per cell, Locust against it, results per contract."""

import functools
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from contract import (
    CALIBRATION_KEYS,
    CLIENTS,
    GAP_NOTE_S,
    NO_CLIENT,
    NOT_STEADY,
    SERVER_ENV,
    STALLED,
)
from contract.slo import Judgement
from contract.slo import judge as judge_slo
from loadtests import manifest, postgres
from loadtests.calibrate import calibrate
from loadtests.files import write_atomic
from loadtests.locust_runner import (
    STARTUP_SLACK_S,
    LocustRun,
    locust_command,
    merge_raw,
    wait_locust,
)
from loadtests.matrix import Cell, MatrixSpec
from loadtests.process import (
    CpuSampler,
    Pinning,
    ServerError,
    free_port,
    log_tail,
    pin,
    run_server,
    server_command,
    spawn,
    wait_healthy,
)
from loadtests.scenarios import SCENARIOS
from loadtests.scrape import MetricsScraper, Row, cpu_rows, summarize_metrics, write_metrics
from loadtests.search import Search, capacity_row, run_search, write_capacity
from loadtests.summary import (
    load_requests,
    open_loop_metrics,
    summarize_requests,
    summary_row,
    validity,
    write_summary,
)
from loadtests.threads import summarize as summarize_threads
from servers import db
from servers.settings import Settings

# How long the orchestrator waits for a fresh server's /ready before the cell fails.
READY_TIMEOUT_S = 30.0
# A failed cell keeps this many of the last lines of its server.log in cell.json.
SERVER_LOG_LINES = 10
LOG_LINE_MAX = 300


@dataclass
class RunContext:
    """What every cell of a run shares."""

    out: Path
    pinning: Pinning
    python: str = sys.executable
    upstream_url: str | None = None
    upstream_pid: int | None = None
    # The run's own PostgreSQL cluster (`db_url = "lab"` cells), while it runs.
    db_url: str | None = None
    db_pid: int | None = None
    target: str | None = None
    locust_processes: int = 1
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    ready_timeout_s: float = READY_TIMEOUT_S


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
        # The same cell id gives the same arrival times in every run (and on --resume).
        seed = zlib.crc32(cell.cell_id.encode())
        options.update(rate=cell.rate, arrivals=spec.arrivals, arrival_seed=seed)
    return options


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


def cell_command(
    cell: Cell, spec: MatrixSpec, ctx: RunContext, host: str, server_pid: int | None = None
) -> list[str]:
    """The Locust command line of a cell (with the server's pid, it can dump its threads)."""
    options = locust_options(cell, spec)
    if server_pid is not None and spec.dump_after_s:
        options.update(server_pid=server_pid, dump_after=spec.dump_after_s)
    return locust_command(
        SCENARIOS[cell.scenario],
        host=host,
        users=cell.users,
        spawn_rate=spec.spawn_rate,
        clock=spec.clock(),
        cell_dir=ctx.out / cell.cell_id,
        options=options,
        processes=ctx.locust_processes,
        python=ctx.python,
    )


@dataclass(frozen=True)
class Collected:
    """What a cell's run left behind: Locust's end, its rows and facts, CPU and the server's."""

    locust: LocustRun
    meta: dict[str, Any]
    requests: Path
    cpu: CpuSampler
    series: list[Row]
    scrape_failures: int
    server_exit: int | None
    healthy_s: float
    upstream: dict[str, float] | None


@dataclass(frozen=True)
class Judged:
    """A collected cell, judged: its numbers, validity, steadiness and whether it stalled."""

    window: tuple[float, float]
    metrics: dict[str, Any]
    cpu: dict[str, float | None]
    mechanisms: dict[str, Any]
    valid: bool
    invalid_reason: str
    stalled: bool
    stall_evidence: str
    extra: dict[str, Any]


def run_cell(cell: Cell, spec: MatrixSpec, ctx: RunContext) -> dict[str, Any]:
    """Run one cell and write its cell.json; failures are recorded, not raised."""
    cell_dir = ctx.out / cell.cell_id
    shutil.rmtree(cell_dir, ignore_errors=True)
    cell_dir.mkdir(parents=True)
    env = server_env(cell, spec, ctx)
    started = time.monotonic()
    collected: Collected | None = None
    judged: Judged | None = None
    reason = ""
    try:
        collected = collect(cell, spec, ctx, cell_dir, env)
        reason = failure(collected, spec)
        if not reason:
            judged = judge(cell, spec, ctx, collected)
    except ServerError as exc:
        reason = f"server never became ready: {exc}"
    except Exception as exc:  # one broken cell must not end the matrix
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{env[SERVER_ENV['db_path']]}{suffix}").unlink(missing_ok=True)
    # The server is gone by now (spawn killed its group): its log is complete.
    tail = log_tail(cell_dir / "server.log", SERVER_LOG_LINES) if reason else []
    doc = cell_document(cell, spec, ctx, env, collected, judged, with_log_end(reason, tail))
    doc["server_log_tail"] = tail
    doc["wall_s"] = round(time.monotonic() - started, 2)
    write_atomic(cell_dir / "cell.json", json.dumps(doc, indent=2))
    return doc


def with_log_end(reason: str, tail: list[str]) -> str:
    """A server failure's reason with the last line its server.log holds (often the error).

    Every other line of the tail is in cell.json `server_log_tail` and on the console.
    """
    if not reason.startswith("server ") or not tail:
        return reason
    return f"{reason}; server.log ends: {clip(tail[-1])}"


def clip(line: str) -> str:
    """One log line, cut to LOG_LINE_MAX characters."""
    return line if len(line) <= LOG_LINE_MAX else line[: LOG_LINE_MAX - 3] + "..."


def collect(
    cell: Cell, spec: MatrixSpec, ctx: RunContext, cell_dir: Path, env: dict[str, str]
) -> Collected:
    """Start the server and Locust, wait for the end, gather rows, CPU and /metrics."""
    began = time.monotonic()
    upstream_before = upstream_stats(ctx)
    with ExitStack() as stack, CpuSampler() as sampler:
        server = None
        host = ctx.target
        if host is None:
            port = free_port()
            host = f"http://127.0.0.1:{port}"
            server = stack.enter_context(
                spawn(
                    server_command(cell.variant, port, ctx.python),
                    cell_dir / "server.log",
                    env=env,
                    cpus=ctx.pinning.server,
                )
            )
            sampler.watch("server", server.pid)
        if ctx.upstream_pid is not None:
            sampler.watch("upstream", ctx.upstream_pid)
        if ctx.db_pid is not None and env.get(SERVER_ENV["db_url"]):
            sampler.watch("db", ctx.db_pid)
        cmd = cell_command(cell, spec, ctx, host, server.pid if server is not None else None)
        (cell_dir / "command.json").write_text(json.dumps(cmd))
        timeout = spec.clock().longest_s + STARTUP_SLACK_S
        # Locust imports while the server starts (other core); both wait for /ready, a route
        # that needs no thread, so a server stalled later still counts as ready now.
        with spawn(cmd, cell_dir / "locust.log", cpus=ctx.pinning.load) as locust:
            sampler.watch("loadgen", locust.pid)
            if server is not None:
                wait_healthy(server, f"{host}/ready", ctx.ready_timeout_s)
            healthy_s = time.monotonic() - began
            scraper = MetricsScraper(f"{host}/metrics")
            # With the observer off, nothing scrapes either: the arm measures no observation.
            with scraper if observed(env) else nullcontext():
                run = wait_locust(locust, timeout)
        server_code = server.poll() if server is not None else None
    raw, meta = merge_raw(cell_dir)
    return Collected(
        locust=run,
        meta=meta,
        requests=raw,
        cpu=sampler,
        series=scraper.rows + cpu_rows(sampler.samples),
        scrape_failures=scraper.failures,
        server_exit=server_code,
        healthy_s=round(healthy_s, 2),
        upstream=stats_delta(upstream_before, upstream_stats(ctx)),
    )


def failure(collected: Collected, spec: MatrixSpec) -> str:
    """Why a collected cell has no numbers ("" when it has)."""
    run, meta = collected.locust, collected.meta
    if collected.server_exit is not None:
        return f"server exited with code {collected.server_exit} during the run"
    if meta.get("not_ready"):
        return f"server never became ready: Locust found {meta['not_ready']} silent"
    if run.timed_out:
        return f"Locust hung: killed after {run.wall_s:.0f} s (see locust.log)"
    if not run.ok or meta["test_start"] is None:
        return f"Locust exited with code {run.returncode} (see locust.log)"
    if meta.get("window_end") is None:
        return "the locustfile's clock never closed the window (see locust.log)"
    return ""


def judge(cell: Cell, spec: MatrixSpec, ctx: RunContext, collected: Collected) -> Judged:
    """Numbers, validity, Little's law and the stall rule of a collected cell."""
    meta = collected.meta
    start, end = meta["window_start"], meta["window_end"]
    cell_end = meta.get("test_stop") or end
    users = cell.users
    rows = load_requests(collected.requests)
    # Little's law checks a closed loop; an open loop is checked against its schedule instead.
    loop_users = users if cell.rate is None else None
    metrics = summarize_requests(rows, start, end, loop_users, cell_end, meta["test_start"])
    metrics["users_in_loop"] = meta.get("users_in_loop")
    open_loop = None
    if cell.rate is not None:
        open_loop = open_loop_metrics(rows, start, end, meta.get("slots_full_at"))
        metrics.update(open_loop)
    sampler = collected.cpu
    cpu = {
        f"{name}_{stat}": (None if v is None else round(v, 1))
        for name in ("loadgen", "upstream", "server", "db")
        for stat, v in (
            ("pct", sampler.percent(name, start, end)),
            ("peak_pct", sampler.peak(name, start, end)),
        )
    }
    mechanisms = {
        **summarize_metrics(collected.series, start, end),
        "scrape_failures": collected.scrape_failures,
    }
    valid, invalid_reason = validity(
        cpu["loadgen_pct"],
        cpu["upstream_pct"],
        meta["spawned"],
        users + SCENARIOS[cell.scenario].extra_users,
        ctx.pinning.shared_load_core,
        open_loop,
        cpu["db_pct"],
    )
    stalled = bool(meta.get("stalled")) or (
        metrics["in_flight_at_end"] > 0 and metrics["since_last_completion_s"] >= spec.stall_s
    )
    evidence = ""
    gap_start, gap_end = metrics.pop("gap_bounds")
    gap_in_flight, gap_errors = metrics.pop("gap_in_flight"), metrics.pop("gap_ended_by_errors")
    if stalled or metrics["gap_max_s"] >= GAP_NOTE_S:
        evidence = stall_evidence(
            gap_end - gap_start,
            gap_in_flight,
            sampler.percent("server", gap_start, gap_end),
            summarize_metrics(collected.series, gap_start, gap_end),
            spec.tokens_of(cell),
            gap_errors,
        )
    ok = metrics["ok"]
    server_cpu = cpu["server_pct"]
    extra = {
        "cpu_ms_per_req": (
            round(server_cpu / 100 * (end - start) / ok * 1000, 4)
            if server_cpu is not None and ok
            else None
        ),
        **upstream_drift(collected.upstream, spec.upstream_latency_ms(cell.scenario)),
        **thread_dump(
            ctx.out / cell.cell_id,
            in_gap(meta.get("thread_dumps"), meta.get("test_start"), (gap_start, gap_end)),
        ),
    }
    return Judged(
        window=(start, end),
        metrics=metrics,
        cpu=cpu,
        mechanisms=mechanisms,
        valid=valid,
        invalid_reason=invalid_reason,
        stalled=stalled,
        stall_evidence=evidence,
        extra=extra,
    )


def in_gap(
    dumps: list[dict[str, Any]] | None, test_start: float | None, gap: tuple[float, float]
) -> list[dict[str, Any]] | None:
    """The dumps, the ones taken inside the cell's longest gap last (the one judged by).

    `stall_evidence` describes the longest gap; a dump from an earlier, shorter gap (during the
    warm-up, say) must not describe it when one from the longest gap exists.
    """
    if not dumps or test_start is None:
        return dumps
    lo, hi = gap

    def inside(info: dict[str, Any]) -> bool:
        at = info.get("at_s")
        return at is not None and lo <= test_start + at <= hi + 1.0

    return [d for d in dumps if not inside(d)] + [d for d in dumps if inside(d)]


def thread_dump(cell_dir: Path, dumps: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The cell's `threads` diagnosis, from the last dump taken while nothing completed."""
    if not dumps:
        return {"threads": ""}
    info = dumps[-1]
    dump = cell_dir / str(info.get("file", ""))
    if info.get("error") or not dump.is_file():
        return {"threads": f"no dump: {info.get('error', 'dump file missing')}"}
    if info.get("code"):
        first = (dump.read_text().strip().splitlines() or [""])[0]
        return {"threads": f"no dump: py-spy exited {info['code']}: {first}"}
    found = summarize_threads(dump.read_text())
    at = f"after {info['since_s']:.1f} s without a completion, {info.get('in_flight')} in flight"
    return {"threads": f"{found['diagnosis']} ({at})", "thread_waits": found["waits"]}


def stall_evidence(
    gap_s: float,
    in_flight: int,
    server_cpu_pct: float | None,
    gauges: dict[str, Any],
    tokens: int,
    ended_by_errors: int = 0,
) -> str:
    """One sentence: the longest time nothing completed, and what the server looked like then."""
    parts = [f"no completion for {gap_s:.1f} s with {in_flight} in flight"]
    if server_cpu_pct is not None:
        parts.append(f"server CPU {server_cpu_pct:.0f}%")
    in_use, waiting = gauges.get("threadpool_peak_in_use"), gauges.get("threadpool_peak_waiting")
    if in_use is not None:
        parts.append(f"threadpool {in_use:.0f}/{tokens} in use, {waiting or 0:.0f} waiting")
    if (db := gauges.get("db_pool_peak_checked_out")) is not None:
        parts.append(f"db pool {db:.0f} checked out")
    if (active := gauges.get("http_pool_peak_active")) is not None:
        parts.append(
            f"upstream pool {active:.0f} active, {gauges.get('http_pool_peak_waiting') or 0:.0f}"
            " waiting"
        )
    if ended_by_errors:
        parts.append(f"ended by {ended_by_errors} errors")
    return "; ".join(parts)


def upstream_stats(ctx: RunContext) -> dict[str, float] | None:
    """The mock upstream's own counters (GET /stats), None when there is none or it is silent."""
    if not ctx.upstream_url:
        return None
    root = ctx.upstream_url.removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/stats", timeout=2.0) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def stats_delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """What the upstream served between two /stats reads."""
    if not before or not after:
        return None
    return {k: after[k] - before[k] for k in after if isinstance(after.get(k), int | float)}


def upstream_drift(delta: dict[str, float] | None, configured_ms: float | None) -> dict[str, Any]:
    """Mean latency the upstream served during the cell, and its drift from the configured one.

    The mock's own `configured_ms_sum` (jitter included) is the reference when it reports one.
    """
    if not delta or not delta.get("requests") or configured_ms is None:
        return {"upstream_served_ms": None, "upstream_drift_ms": None}
    served = delta["served_ms_sum"] / delta["requests"]
    if delta.get("configured_ms_sum"):
        configured_ms = delta["configured_ms_sum"] / delta["requests"]
    return {
        "upstream_served_ms": round(served, 3),
        "upstream_drift_ms": round(served - configured_ms, 3),
    }


def cell_document(
    cell: Cell,
    spec: MatrixSpec,
    ctx: RunContext,
    env: dict[str, str],
    collected: Collected | None,
    judged: Judged | None,
    reason: str,
) -> dict[str, Any]:
    """cell.json: the cell, its settings, and what was measured (or why nothing was)."""
    doc: dict[str, Any] = {
        "cell_id": cell.cell_id,
        "scenario": cell.scenario,
        "variant": cell.variant,
        "client": cell.client,
        "arm": cell.arm,
        "users": cell.users,
        "offered_rps": cell.rate,
        "repeat": cell.repeat,
        "status": "ok" if judged is not None else "failed",
        "reason": reason,
        "valid": False,
        "invalid_reason": "",
        "window_start": None,
        "window_end": None,
        "cut_off": None,
        "settings": cell_settings(cell, spec, env),
        "env": env,
        "pinning": ctx.pinning.to_dict(),
        "db": db_driver(env, cell.variant),
        "cpu": {},
        "metrics": {},
        "judged": {},
        "mechanisms": {},
        "command": cell_command(cell, spec, ctx, ctx.target or "http://127.0.0.1:<port>"),
    }
    if collected is not None:
        doc["timings"] = {"healthy_s": collected.healthy_s}
        doc["locust"] = {
            "returncode": collected.locust.returncode,
            "timed_out": collected.locust.timed_out,
            "wall_s": collected.locust.wall_s,
            **collected.meta,
        }
        doc["cut_off"] = collected.meta.get("cut_off")
        doc["upstream_stats"] = collected.upstream
        if judged is None:
            write_metrics(ctx.out / cell.cell_id / "metrics.csv", collected.series)
    if judged is not None:
        assert collected is not None
        write_metrics(ctx.out / cell.cell_id / "metrics.csv", collected.series)
        doc["window_start"], doc["window_end"] = judged.window
        doc.update(
            valid=judged.valid,
            invalid_reason=judged.invalid_reason,
            cpu=judged.cpu,
            metrics=judged.metrics,
            mechanisms=judged.mechanisms,
            judged={
                "stalled": judged.stalled,
                "stall_evidence": judged.stall_evidence,
                **judged.extra,
            },
        )
    return doc


def db_driver(env: dict[str, str], variant: str) -> str:
    """The database and driver a cell's server runs (`contract.DB_DRIVERS`)."""
    url, driver = env_setting(env, "db_url"), env_setting(env, "db_async_driver")
    return db.driver(url, driver, sync=variant != "async")


def needs_postgres(spec: MatrixSpec, cells: list[Cell], searches: bool = False) -> bool:
    """Whether a cell to run (or a capacity search) uses the run's cluster (`db_url = "lab"`)."""
    settings = [spec.settings_of(spec.arm_of(c)) for c in cells]
    if searches:  # the searches' rate cells run the main matrix's settings
        settings.append(spec.settings_of())
    return any(s.get("db_url") == postgres.LAB_CLUSTER for s in settings)


@contextmanager
def run_cluster(ctx: RunContext) -> Iterator[None]:
    """Start PostgreSQL once for the run, pinned with the load generator (its CPU is recorded
    per cell as `db_cpu_pct`); every cell's server gets a freshly seeded table."""
    with postgres.run_postgres(base=ctx.scratch, cpus=ctx.pinning.load) as cluster:
        ctx.db_url, ctx.db_pid = cluster.url, cluster.pid
        try:
            yield
        finally:
            ctx.db_url = ctx.db_pid = None


@contextmanager
def run_upstream(ctx: RunContext, spec: MatrixSpec) -> Iterator[None]:
    """Start the mock upstream once for the run, pinned with the load generator."""
    env = {"LAB_MOCK_TTFT_MS": str(spec.ttft_ms), "LAB_MOCK_ITL_MS": str(spec.itl_ms)}
    with run_server(
        "upstream", ctx.out / "upstream.log", env=env, cpus=ctx.pinning.load, python=ctx.python
    ) as (proc, url):
        ctx.upstream_url, ctx.upstream_pid = f"{url}/v1", proc.pid
        try:
            yield
        finally:
            ctx.upstream_url = ctx.upstream_pid = None


def plan_cells(spec: MatrixSpec, out: Path, resume: bool) -> tuple[list[Cell], list[Cell]]:
    """All cells, and those still to run (resume skips cells whose cell.json exists)."""
    cells = spec.cells()
    if not resume:
        return cells, cells
    return cells, [c for c in cells if not (out / c.cell_id / "cell.json").exists()]


def flags(doc: dict[str, Any]) -> list[str]:
    """What is wrong with a finished cell's numbers, most serious first (empty: nothing)."""
    judged, metrics = doc.get("judged", {}), doc.get("metrics", {})
    out = []
    if judged.get("stalled"):
        out.append(f"[red]{STALLED.upper()}[/] {judged['stall_evidence']}")
    if not doc["valid"]:
        out.append(f"[yellow]INVALID[/] {doc['invalid_reason']}")
    if metrics.get("steady") is False:
        out.append(f"[yellow]{NOT_STEADY.upper()}[/] ({not_steady_evidence(doc)})")
    return out


def not_steady_evidence(doc: dict[str, Any]) -> str:
    """Why Little's law failed, in the cell's own numbers."""
    m = doc["metrics"]
    ratio = m.get("little_ratio")
    parts = [f"Little: {ratio:.2f}" if ratio is not None else "no request started in the window"]
    if m.get("users_in_loop") is not None and m["users_in_loop"] < doc["users"]:
        parts.append(f"{m['users_in_loop']}/{doc['users']} users had an answer before the window")
    if m.get("starved"):
        parts.append(f"{m['starved']} requests waited through the whole window")
    return "; ".join(parts)


def describe(doc: dict[str, Any]) -> str:
    """One progress line for a finished cell."""
    if doc["status"] != "ok":
        tail = doc.get("server_log_tail") or []
        shown = "".join(f"\n      server.log | {escape(clip(line))}" for line in tail)
        return f"[red]FAILED[/] {escape(doc['reason'])}{shown}"
    m = doc["metrics"]
    p99 = "-" if m.get("p99_ms") is None else f"{m['p99_ms']:.1f}"
    offered = ""
    if doc.get("offered_rps") is not None:
        offered = f"offered={doc['offered_rps']:g} sent={m.get('achieved_rps') or 0:.1f}/s  "
    line = (
        f"{offered}rps={m['rps']:8.1f}  p99={p99:>8} ms  n={m['requests']:<5} ok={m['ok']:<5} "
        f"err={m['errors']:<4} timeout={m['timeouts']:<3} censored={m['censored']:<4} "
        f"loadgen={doc['cpu'].get('loadgen_pct') or 0:3.0f}%  "
        f"server={doc['cpu'].get('server_pct') or 0:3.0f}%"
    )
    return "  ".join([line, *flags(doc)])


def take_calibration(ctx: RunContext, label: str, console: Console) -> dict[str, Any]:
    """Measure how fast the machine is right now; a failure is recorded, not raised."""
    try:
        entry: dict[str, Any] = {"label": label, **calibrate(ctx.pinning, ctx.python)}
    except Exception as exc:  # a broken calibration must not cost the run
        entry = {"label": label, "ts": time.time(), "error": f"{type(exc).__name__}: {exc}"}
    manifest.add_calibration(ctx.out, entry)
    shown = ", ".join(f"{k}={v:,.0f}" for k, v in entry.items() if k in CALIBRATION_KEYS)
    console.print(f"calibration {label}: {shown or entry.get('error')}", soft_wrap=True)
    return entry


def run_matrix(
    spec: MatrixSpec, ctx: RunContext, resume: bool = False, console: Console | None = None
) -> list[dict[str, Any]]:
    """Run every cell still to do, keep summary.csv current; Ctrl-C keeps finished cells.

    The machine is calibrated before the first cell and after each pass (repeat).
    """
    console = console or Console()
    # The orchestrator itself (sampling, bookkeeping) stays off the server's core.
    pin(os.getpid(), ctx.pinning.load)
    cells, todo = plan_cells(spec, ctx.out, resume)
    ctx.out.mkdir(parents=True, exist_ok=True)
    run_manifest = manifest.start(ctx, spec, cells, todo)
    order = [c.cell_id for c in cells]
    searches = spec.searches()
    needs_upstream = not ctx.target and any(SCENARIOS[c.scenario].proxy for c in todo) | any(
        SCENARIOS[s[0]].proxy for s in searches
    )
    docs: list[dict[str, Any]] = []
    interrupted = False
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s est."),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    try:
        with ExitStack() as stack:
            if needs_upstream:
                stack.enter_context(run_upstream(ctx, spec))
            if needs_postgres(spec, todo, bool(searches)):
                if ctx.target:
                    raise ValueError(
                        "db_url = 'lab' needs the lab's own servers: drop --target or the arm"
                    )
                stack.enter_context(run_cluster(ctx))
            stack.enter_context(progress)
            bar = progress.add_task("cells", total=spec.estimate_s(todo))
            if (todo or searches) and not ctx.target:
                take_calibration(ctx, "before" if not resume else "resume", console)
            for i, cell in enumerate(todo, 1):
                progress.update(bar, description=f"{i}/{len(todo)} {cell.cell_id}")
                doc = run_cell(cell, spec, ctx)
                docs.append(doc)
                line = f"{i:>4}/{len(todo)} {cell.cell_id:<36} {describe(doc)}"
                console.print(line, soft_wrap=True)
                progress.advance(bar, spec.cell_seconds(cell))
                write_summary(ctx.out, order)
                last_of_pass = i == len(todo) or todo[i].repeat != cell.repeat
                if last_of_pass and not ctx.target:
                    take_calibration(ctx, f"after pass {cell.repeat}", console)
            if searches:
                docs += run_searches(spec, ctx, resume, console, order, (progress, bar))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        write_summary(ctx.out, order)
        manifest.finish(ctx.out, manifest.load(ctx.out) or run_manifest, docs, interrupted)
    return docs


@dataclass
class SearchRun:
    """What the cells of the capacity searches share while they run."""

    spec: MatrixSpec
    ctx: RunContext
    resume: bool
    console: Console
    order: list[str]
    bar: tuple[Progress, Any]
    docs: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""

    def measure(self, search: Search, rate: int) -> tuple[Judgement, dict[str, Any]]:
        """Run (or on --resume read back) one rate of `search`; its row judged on the SLO."""
        spec, progress, task = self.spec, *self.bar
        slo = spec.slo_spec()
        assert slo is not None
        cell = spec.rate_cell(search.scenario, search.variant, search.client, rate, search.repeat)
        done = self.ctx.out / cell.cell_id / "cell.json"
        progress.update(task, description=f"{self.label} {cell.cell_id}")
        if self.resume and done.exists():
            doc = json.loads(done.read_text())
        else:
            doc = run_cell(cell, spec, self.ctx)
            progress.advance(task, spec.cell_seconds(cell))
        self.docs.append(doc)
        self.order.append(cell.cell_id)
        write_summary(self.ctx.out, self.order)
        row = summary_row(doc)
        judgement = judge_slo(row, slo)
        self.console.print(
            f"{self.label} {cell.cell_id:<36} {describe(doc)}  "
            f"SLO: {judgement.status} ({judgement.why})",
            soft_wrap=True,
        )
        return judgement, row


def run_searches(
    spec: MatrixSpec,
    ctx: RunContext,
    resume: bool,
    console: Console,
    order: list[str],
    bar: tuple[Progress, Any],
) -> list[dict[str, Any]]:
    """Run every SLO capacity search (loadtests/search.py); capacity.csv is kept current.

    On --resume a rate already measured is read back from its cell.json, so the search takes
    the same path again and goes on where it stopped.
    """
    slo = spec.slo_spec()
    assert slo is not None
    run = SearchRun(spec, ctx, resume, console, order, bar)
    rows: list[dict[str, Any]] = []
    plan = spec.searches()
    for i, (scenario, variant, client, repeat) in enumerate(plan, 1):
        run.label = f"search {i}/{len(plan)}"
        search = Search(scenario, variant, client, repeat)
        run_search(search, spec.rates, spec.bisect_steps, functools.partial(run.measure, search))
        row = capacity_row(search, slo)
        rows.append(row)
        write_capacity(ctx.out, rows)
        console.print(
            f"capacity {scenario} {variant}{'' if client == NO_CLIENT else '-' + client}: "
            f"{row['capacity_rps'] or '-'} req/s at "
            f"{slo.text()} ({row['bound']}; {row['limit_reason'] or 'every rate passed'})",
            soft_wrap=True,
        )
        last_of_pass = i == len(plan) or plan[i][3] != repeat
        if last_of_pass and not ctx.target:
            take_calibration(ctx, f"after search pass {repeat}", console)
    return run.docs
