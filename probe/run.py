"""`sync-async-lab probe`: the lab's method on the user's own app, one route at a time.

1. **Inventory** (`python -m probe.inventory`, a child process): the routes, their styles and
   dependencies, the OpenAPI document. A target that does not import is exit code 2.
2. **Requests** (probe/requests.py): one or more per route, from the document or `--requests`.
3. **Smoke**: the app started once under the lab's launcher, each request sent three times
   alone; a route that answers 4xx/5xx to all of them is reported with the status and body and
   left out (the command then ends with exit code 2, after probing the others).
4. **Cells** (probe/plan.py): for each route, the lab's closed-loop cells and arms, each on a
   fresh server (`python -m probe.serve`) pinned to its own core, Locust on the other, measured
   by `loadtests.measure` exactly as `make bench` measures a cell; then its capacity at the SLO
   (`loadtests.search`, open loop).
5. **Report**: `python -m analysis report` on the folder, whose first section is the probe's.

Everything lands in the output folder as a run of the lab: `manifest.json` (`kind: probe`),
`routes.json` (the inventory), `probe.json` (the plan and the smoke), `summary.csv`,
`capacity.csv`, one folder per cell (with `blocking.json`, the loop sampler's episodes), then
`routes.csv`, `report.md`, `report.html` and `charts/`.
"""

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

import contract
from contract.cell import CellResult
from contract.slo import SloCheck, check, parse_slo
from loadtests.context import RunContext
from loadtests.distributed import LoadHosts
from loadtests.files import write_atomic
from loadtests.locust_runner import Clock as LocustClock
from loadtests.matrix import Cell
from loadtests.measure import measure
from loadtests.plan import BIND, PORT, CellPlan, ServerPlan
from loadtests.process import Pinning, ServerError, free_port, log_tail, spawn, wait_healthy
from loadtests.runner import describe
from loadtests.scenarios import Scenario
from loadtests.search import Search, capacity_row, run_search, write_capacity
from loadtests.session import Services, Session, run_session
from loadtests.summary import summary_row
from probe import plan as probe_plan
from probe.arms import Arm
from probe.instrument import METRICS, POOLS, READY
from probe.requests import RoutePlan, plan_requests, select_routes
from probe.target import Target

INVENTORY_FILE = "routes.json"
BLOCKING_FILE = "blocking.json"
PROBE_FILE = "probe.json"
REQUESTS_DIR = "requests"
SMOKE_TRIES = 3
SMOKE_TIMEOUT_S = 30.0
INVENTORY_TIMEOUT_S = 120.0
SCENARIO = ("probe.py", ("RouteUser", "PingUser"))


class ProbeInputError(Exception):
    """Bad input: one line for the user, exit code 2."""


@dataclass
class ProbeOptions:
    """Everything `sync-async-lab probe` takes."""

    target: Target
    out: Path
    requests: Path | None = None
    # `--header`: sent with every request (over the requests file's top-level `headers`).
    headers: dict[str, str] = field(default_factory=dict)
    routes: list[str] = field(default_factory=list)
    quick: bool = False
    slo: str = "p99=500ms,errors=1%"
    unsafe: bool = False
    resume: bool = False
    dry_run: bool = False
    users: list[int] | None = None
    stall_s: float | None = None
    block_ms: float | None = None
    python: str = sys.executable
    # Locust workers on other hosts (loadtests/distributed.py); None: Locust runs here.
    load_hosts: LoadHosts | None = None

    def settings(self) -> probe_plan.Settings:
        """The probe's settings: the default or `--quick` plan with the options applied."""
        base = probe_plan.QUICK if self.quick else probe_plan.Settings()
        parse_slo(self.slo)  # ValueError on a bad SLO
        out = replace(base, slo=self.slo)
        if self.users:
            out = replace(out, levels=tuple(sorted(set(self.users))))
        if self.block_ms is not None:
            out = replace(out, block_ms=self.block_ms)
        if self.stall_s is not None:
            clock = replace(out.clock, stall_s=self.stall_s, grace_s=self.stall_s + 1)
            out = replace(out, clock=clock)
        return out


# --- 1. Inventory --------------------------------------------------------------------------------


def take_inventory(options: ProbeOptions) -> dict[str, Any]:
    """Run `python -m probe.inventory` on the target; ProbeInputError with its one line."""
    out = options.out / INVENTORY_FILE
    cmd = [options.python, "-m", "probe.inventory", *options.target.argv(), "--out", str(out)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=INVENTORY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ProbeInputError(
            f"importing {options.target.spec} took over {INVENTORY_TIMEOUT_S:g} s"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {done.returncode}"
        raise ProbeInputError(last.removeprefix("error: "))
    return json.loads(out.read_text())


# --- 3. Smoke ------------------------------------------------------------------------------------


def serve_command(
    options: ProbeOptions, arm: Arm, block_ms: float, blocking: Path | None = None
) -> tuple[str, ...]:
    """`python -m probe.serve` for the target and an arm (`{port}` marks the port)."""
    return (
        options.python,
        "-m",
        "probe.serve",
        *options.target.argv(),
        "--host",
        BIND,
        "--port",
        PORT,
        "--arm",
        arm.to_json(),
        "--block-ms",
        f"{block_ms:g}",
        *(["--blocking-file", str(blocking)] if blocking is not None else []),
    )


@dataclass
class Smoke:
    """What each route's requests answered, sent alone; the pools the app made."""

    routes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pools: dict[str, Any] = field(default_factory=dict)

    def ok_statuses(self, route_id: str) -> dict[str, list[int]]:
        """Per request label+path: the statuses under 400 it answered (what load counts ok)."""
        out: dict[str, list[int]] = {}
        for tried in self.routes.get(route_id, []):
            good = sorted({s for s in tried["statuses"] if isinstance(s, int) and s < 400})
            out[tried["path"]] = good
        return out

    def failure(self, route_id: str) -> str:
        """Why every request of the route failed ("" when one answered below 400)."""
        tried = self.routes.get(route_id, [])
        if not tried or any(self.ok_statuses(route_id).values()):
            return ""
        first = tried[0]
        status = first["statuses"][0]
        body = first["body"].strip().replace("\n", " ")[:200]
        return f"answered {status} to every probe request ({first['path']}): {body}"

    def latency_s(self, route_id: str) -> float:
        """The route's slowest answer alone, seconds (for the estimate of a drain)."""
        values = [ms for t in self.routes.get(route_id, []) for ms in t["ms"]]
        return max(values, default=0.0) / 1000

    def pool_capacity(self) -> int | None:
        """The DB pools' size + overflow, summed, when the app made any."""
        pools = self.pools.get("db") or []
        total = sum((p.get("size") or 0) + max(p.get("overflow") or 0, 0) for p in pools)
        return total or None


def run_smoke(
    options: ProbeOptions, plans: list[RoutePlan], settings: probe_plan.Settings
) -> Smoke:
    """Start the app as written once, send each route's requests alone, ask for its pools."""
    smoke = Smoke()
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    log = options.out / "smoke-server.log"
    argv = ServerPlan(tuple(serve_command(options, Arm(), settings.block_ms))).argv(port)
    with spawn(argv, log) as server:
        try:
            wait_healthy(server, f"{host}{READY}", 60.0)
        except ServerError as exc:
            tail = log_tail(log, 3)
            ends = f"; its log ends: {tail[-1]}" if tail else ""
            raise ProbeInputError(f"the app did not start under uvicorn: {exc}{ends}") from None
        with httpx.Client(base_url=host, timeout=SMOKE_TIMEOUT_S) as client:
            for plan in plans:
                smoke.routes[plan.id] = [try_request(client, r) for r in plan.requests]
            smoke.pools = client.get(POOLS).json()
    return smoke


def try_request(client: httpx.Client, request: Any) -> dict[str, Any]:
    """Send one probe request SMOKE_TRIES times: statuses, milliseconds, the first body."""
    statuses: list[int | str] = []
    times: list[float] = []
    body = ""
    for _ in range(SMOKE_TRIES):
        start = time.perf_counter()
        try:
            response = client.request(
                request.method,
                request.path,
                params=request.query or None,
                json=request.json,
                headers=request.headers or None,
            )
            statuses.append(response.status_code)
            body = body or response.text[:300]
        except httpx.HTTPError as exc:
            statuses.append(f"{type(exc).__name__}")
            body = body or str(exc)[:300]
        times.append((time.perf_counter() - start) * 1000)
    return {"path": request.path, "statuses": statuses, "ms": times, "body": body}


# --- 4. Cells ------------------------------------------------------------------------------------


@dataclass
class Probe:
    """One probe run while it runs: options, settings, the context and the session."""

    options: ProbeOptions
    settings: probe_plan.Settings
    ctx: RunContext
    smoke: Smoke
    session: Session | None = None

    def locust_clock(self) -> LocustClock:
        """The cells' timeline, as the locustfile keeps it."""
        c = self.settings.clock
        return LocustClock(
            warmup_s=c.warmup_s,
            window_min_s=c.duration_s,
            window_max_s=max(c.window_max_s, c.duration_s),
            sample_target=c.sample_target,
            grace_s=c.grace_s,
            stall_s=c.stall_s,
            warmup_max_s=c.warmup_max_s,
        )

    def cell_plan(self, plan: RoutePlan, cell: Cell, arm: Arm, why: str) -> CellPlan:
        """The loadtests plan of one probe cell."""
        settings, clock = self.settings, self.settings.clock
        tokens = arm.tokens or settings.default_tokens
        requests_file = self.ctx.out / REQUESTS_DIR / f"{plan.id}.json"
        options: dict[str, Any] = {
            "probe_requests": requests_file,
            "ready_path": READY,
            "request_timeout": clock.request_timeout_s,
        }
        if cell.rate is not None:
            from loadtests.plan import arrival_seed

            options.update(rate=cell.rate, arrivals="poisson", arrival_seed=arrival_seed(cell))
        recorded = {
            "duration_s": clock.duration_s,
            "window_max_s": clock.window_max_s,
            "sample_target": clock.sample_target,
            "warmup_s": clock.warmup_s,
            "warmup_max_s": clock.warmup_max_s,
            "spawn_rate": clock.spawn_rate,
            "grace_s": clock.grace_s,
            "stall_s": clock.stall_s,
            "dump_after_s": clock.dump_after_s,
            "threadpool_tokens": tokens,
            "rate_slots": settings.rate_slots if cell.rate is not None else None,
            "observe": True,
            "block_ms": settings.block_ms,
            "request_timeout": clock.request_timeout_s,
            "upstream_latency_ms": None,
        }
        return CellPlan(
            cell=cell,
            scenario=Scenario(plan.id, SCENARIO[0], SCENARIO[1], extra_users=1),
            server=ServerPlan(
                serve_command(
                    self.options,
                    arm,
                    settings.block_ms,
                    self.ctx.out / cell.cell_id / BLOCKING_FILE,
                ),
                cwd=Path.cwd(),
                ready_path=READY,
                metrics_path=METRICS,
            ),
            locust_options=options,
            clock=self.locust_clock(),
            spawn_rate=clock.spawn_rate,
            stall_s=clock.stall_s,
            dump_after_s=clock.dump_after_s,
            tokens=tokens,
            settings=recorded,
            probe={
                "route": plan.id,
                "method": plan.route["method"],
                "path": plan.route["path"],
                "written": plan.route["style"],
                "arm": arm.name,
                "arm_settings": arm.settings(),
                "runs_as": why,
            },
            app_root=self.options.target.app_dir,
        )

    def run(self, plan: RoutePlan, cell: Cell, arm: Arm, why: str, label: str) -> CellResult:
        """Run (or on --resume read back) one cell; report it to the session."""
        assert self.session is not None
        done = self.ctx.out / cell.cell_id / "cell.json"
        again = self.options.resume and done.exists()
        self.session.doing(f"{label} {cell.cell_id}")
        result = (
            CellResult.load(done)
            if again
            else measure(self.cell_plan(plan, cell, arm, why), self.ctx)
        )
        estimate = probe_plan.cell_seconds(cell, self.settings, self.smoke.latency_s(plan.id))
        line = f"{label} {cell.cell_id:<44} {describe(result)}"
        self.session.done(result, estimate, line, advance=not again)
        return result

    def confirm(self, plan: RoutePlan, results: list[CellResult], label: str) -> list[CellResult]:
        """`--quick` measures the app as written once at the heaviest load. When the route's
        finding rests on that one cell against one arm's (`flip_faster`, `starves_threadpool`:
        a lead over the app as written), a noisy machine can make it: the app as written is
        measured once more there, as the default plan always does, and the finding is made
        from both cells (their spread is then the noise). Returns the cell run, if one was."""
        if self.settings.repeat_heaviest or not results:
            return []
        from analysis.judge.probe import FLIP_FASTER, STARVES, find
        from analysis.load.probe import load_probe

        heavy = max(r.users for r in results if r.offered_rps is None)
        if any(r.repeat > 1 and not r.arm and r.users == heavy for r in results):
            return []
        run = load_probe(self.options.out, plan.id)
        route = next(r for r in run.routes() if r["id"] == plan.id)
        if find(route, run.cells_of(plan.id), run.route_plan(plan.id)).finding not in (
            FLIP_FASTER,
            STARVES,
        ):
            return []
        cell = Cell(plan.id, probe_plan.VARIANT, probe_plan.NO_CLIENT, heavy, 2)
        return [self.run(plan, cell, Arm(), "as written, again: a lead over one cell", label)]

    def capacity(
        self, plan: RoutePlan, results: list[CellResult], label: str
    ) -> dict[str, Any] | None:
        """The route's capacity at the SLO: a search over rates from its closed-loop best."""
        slo = parse_slo(self.settings.slo)
        # The app as written (no arm, no token count of its own), not stalled, valid or invalid
        # only because the load generator saturated (its throughput is then a floor, and the
        # search's top rates will say the load side limited them: `load_side`).
        counted = [
            r
            for r in results
            if r.ok
            and not r.stalled
            and not r.arm
            and "__t" not in r.cell_id
            and (r.valid or contract.load_side_only(r.invalid_reason))
        ]
        best = max((r.metrics.served_rps or r.metrics.rps or 0.0 for r in counted), default=0.0)
        rates = probe_plan.ladder(best, self.settings)
        if not rates:
            return None
        search = Search(plan.id, probe_plan.VARIANT, probe_plan.NO_CLIENT, 1)

        def measure_rate(rate: int) -> tuple[SloCheck, dict[str, Any]]:
            cell = Cell(
                plan.id,
                probe_plan.VARIANT,
                probe_plan.NO_CLIENT,
                self.settings.rate_slots,
                1,
                rate=rate,
            )
            row = summary_row(self.run(plan, cell, Arm(), "as written, open loop", label))
            return check(row, slo), row

        run_search(search, rates, self.settings.bisect_steps, measure_rate)
        return capacity_row(search, slo)


def write_requests(out: Path, plan: RoutePlan, smoke: Smoke) -> None:
    """The route's requests for the locustfile, each with the statuses that count as ok."""
    ok = smoke.ok_statuses(plan.id)
    kept = [r.to_dict(ok.get(r.path)) for r in plan.requests if ok.get(r.path)]
    folder = out / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plan.id}.json"
    write_atomic(path, json.dumps(kept, indent=2, default=str))
    path.chmod(0o600)  # it may hold the user's credentials (--header): theirs alone to read


def probe(options: ProbeOptions, console: Console) -> int:
    """Run the whole probe; 0, or 2 when a route answered errors to every probe request."""
    settings = options.settings()
    options.out.mkdir(parents=True, exist_ok=True)
    inventory = take_inventory(options)
    plans = select_routes(
        plan_requests(inventory, options.requests, options.unsafe, options.headers),
        options.routes,
    )
    probed = [p for p in plans if not p.not_probed]
    for p in plans:
        if p.not_probed:
            console.print(escape(f"not probed: {p.label}: {p.not_probed}"), soft_wrap=True)
    if not probed:
        raise ProbeInputError("no route of the app can be probed (see the lines above)")
    console.print(
        f"smoke: each request of {len(probed)} routes sent {SMOKE_TRIES} times alone",
        soft_wrap=True,
    )
    smoke = run_smoke(options, probed, settings)
    bad = 0
    for p in probed:
        if why := smoke.failure(p.id):
            console.print(f"[red]error[/]: {escape(f'{p.label} {why}')}", soft_wrap=True)
            p.not_probed, bad = why, bad + 1
    probed = [p for p in probed if not p.not_probed]
    if not probed:
        # Nothing to measure: say so now, not after a calibration and an empty summary.
        raise ProbeInputError(
            "every route answered errors to its probe requests (see the lines above): give "
            "working values in --requests (a token, a header, an id that exists)"
        )
    cells = {p.id: probe_plan.route_cells(p.route, settings, smoke.pool_capacity()) for p in probed}
    planned = [c.cell.cell_id for p in probed for c in cells[p.id][0]]
    latency = max((smoke.latency_s(p.id) for p in probed), default=0.0)
    estimate = probe_plan.estimate_s(len(probed), settings, len(planned), latency)
    console.print(
        f"plan: {len(probed)} routes, {len(planned)} closed-loop cells"
        f"{' and a capacity search each' if settings.capacity else ''}, "
        f"estimated {estimate / 60:.1f} min; results in {options.out}",
        soft_wrap=True,
    )
    for p in probed:
        arms = ", ".join(f"{c.cell.cell_id.split('__', 1)[1]} ({c.why})" for c in cells[p.id][0])
        console.print(escape(f"  {p.label} [{p.route['style']}]: {arms}"), soft_wrap=True)
        for arm, why in cells[p.id][1].items():
            console.print(escape(f"    no {arm} arm: {why}"), soft_wrap=True)
    document = {
        "app": options.target.spec,
        "settings": settings.to_dict(),
        "smoke": {"routes": smoke.routes, "pools": smoke.pools},
        "routes": [
            {
                "id": p.id,
                "label": p.label,
                "not_probed": p.not_probed,
                "requests": [r.to_record() for r in p.requests],
                "arms_left_out": cells[p.id][1] if p.id in cells else {},
                "cells": [c.cell.cell_id for c in cells[p.id][0]] if p.id in cells else [],
            }
            for p in plans
        ],
    }
    write_atomic(options.out / PROBE_FILE, json.dumps(document, indent=2, default=str))
    if options.dry_run:
        return 2 if bad else 0
    ctx = RunContext(
        out=options.out,
        pinning=Pinning.plan(),
        python=options.python,
        load_hosts=options.load_hosts,
    )
    run = Probe(options, settings, ctx, smoke)
    extra = {
        "kind": "probe",
        "probe": {"app": options.target.spec, "app_dir": str(options.target.app_dir.resolve())},
    }
    capacities: list[dict[str, Any]] = []
    with run_session(
        ctx, settings.to_dict(), planned, estimate, console, Services(), manifest_extra=extra
    ) as session:
        run.session = session
        for i, p in enumerate(probed, 1):
            write_requests(options.out, p, smoke)
            label = f"route {i}/{len(probed)}"
            results = [run.run(p, c.cell, c.arm, c.why, label) for c in cells[p.id][0]]
            results += run.confirm(p, results, label)
            if settings.capacity:
                row = run.capacity(p, results, label)
                if row is not None:
                    capacities.append(row)
                    write_capacity(options.out, capacities)
                    console.print(
                        escape(
                            f"capacity {p.label}: {row['capacity_rps'] or '-'} req/s at "
                            f"{settings.slo} ({row['bound']}; "
                            f"{row['limit_reason'] or 'every rate passed'})"
                        ),
                        soft_wrap=True,
                    )
        session.calibrate("after the routes")
    return 2 if bad else 0
