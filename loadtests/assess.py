"""What a collected cell's numbers say: outcomes, validity, steadiness and the stall rule.

Pure over what `loadtests.measure.collect` gathered (the rows, CPU samples, the /metrics series,
Locust's facts) and the cell's plan; the one file it reads is a py-spy dump named in the facts.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract import GAP_NOTE_S, apply_sample_rule
from contract.cell import CellCpu, CellJudged, CellMechanisms, CellMetrics
from loadtests.distributed import boot_id, saturated, worker_cpu
from loadtests.plan import CellPlan
from loadtests.scrape import summarize_metrics
from loadtests.summary import load_requests, open_loop_metrics, summarize_requests, validity
from loadtests.threads import summarize as summarize_threads
from loadtests.threads import user_sites

if TYPE_CHECKING:
    from loadtests.measure import Collected


@dataclass(frozen=True)
class Assessed:
    """A collected cell, assessed: cell.json's measured sections, typed as the contract writes
    them (`contract.cell`). `Assessed()` is a cell with nothing measured (it failed)."""

    window: tuple[float | None, float | None] = (None, None)
    # The sample rule applied (`contract.apply_sample_rule`).
    metrics: CellMetrics = field(default_factory=CellMetrics)
    cpu: CellCpu = field(default_factory=CellCpu)
    mechanisms: CellMechanisms = field(default_factory=CellMechanisms)
    # Whether it stalled and why, its thread diagnosis, CPU per request, the upstream's drift.
    judged: CellJudged = field(default_factory=CellJudged)
    valid: bool = False
    invalid_reason: str = ""


def assess(
    plan: CellPlan,
    collected: "Collected",
    cell_dir: Path,
    shared_load_core: bool,
    distributed: bool = False,
) -> Assessed:
    """Numbers, validity, Little's law and the stall rule of a collected cell; `distributed`:
    its load came from workers on other hosts (`--locust-hosts`), judged by their own CPU."""
    meta = collected.meta
    start, end = meta["window_start"], meta["window_end"]
    cell_end = meta.get("test_stop") or end
    cell = plan.cell
    rows = load_requests(collected.requests)
    # Little's law checks a closed loop; an open loop is checked against its schedule instead.
    loop_users = cell.users if cell.rate is None else None
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
    workers = worker_cpu(meta.get("workers") or [], start, end, boot_id()) if distributed else []
    master_pct = cpu["loadgen_pct"] if distributed else None
    if distributed:
        # The load is the workers' on their hosts: the busiest one is the load generator (the
        # master here, which only gathers, is judged on its own in `saturated`).
        shown = [w["cpu_pct"] for w in workers if w["cpu_pct"] is not None]
        cpu["loadgen_pct"] = max(shown) if shown else None
        cpu["loadgen_peak_pct"] = None
    valid, invalid_reason = validity(
        cpu["loadgen_pct"],
        cpu["upstream_pct"],
        meta["spawned"],
        plan.target_users,
        shared_load_core,
        open_loop,
        cpu["db_pct"],
        load_hosts=saturated(workers, master_pct) if distributed else None,
    )
    stalled = bool(meta.get("stalled")) or (
        metrics["in_flight_at_end"] > 0 and metrics["since_last_completion_s"] >= plan.stall_s
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
            plan.tokens,
            gap_errors,
        )
    ok = metrics["ok"]
    server_cpu = cpu["server_pct"]
    extra = {
        **({"load_hosts": workers, "load_master_pct": master_pct} if workers else {}),
        "cpu_ms_per_req": (
            round(server_cpu / 100 * (end - start) / ok * 1000, 4)
            if server_cpu is not None and ok
            else None
        ),
        **upstream_drift(collected.upstream, plan.upstream_latency_ms),
        **thread_dump(
            cell_dir,
            in_gap(meta.get("thread_dumps"), meta.get("test_start"), (gap_start, gap_end)),
            plan.app_root,
        ),
    }
    return Assessed(
        window=(start, end),
        metrics=CellMetrics.new(apply_sample_rule(metrics)),
        cpu=CellCpu(**cpu),
        mechanisms=CellMechanisms.new(mechanisms),
        judged=CellJudged.new({"stalled": stalled, "stall_evidence": evidence, **extra}),
        valid=valid,
        invalid_reason=invalid_reason,
    )


def in_gap(
    dumps: list[dict[str, Any]] | None, test_start: float | None, gap: tuple[float, float]
) -> list[dict[str, Any]] | None:
    """The dumps, the ones taken inside the cell's longest gap last (the one assessed by).

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


def thread_dump(
    cell_dir: Path, dumps: list[dict[str, Any]] | None, app_root: Path | None = None
) -> dict[str, Any]:
    """The cell's `threads` diagnosis, from the last dump taken while nothing completed; with
    the app's folder (probe cells), where in the app's code the busy threads were too."""
    if not dumps:
        return {"threads": ""}
    info = dumps[-1]
    dump = cell_dir / str(info.get("file", ""))
    if info.get("error") or not dump.is_file():
        return {"threads": f"no dump: {info.get('error', 'dump file missing')}"}
    if info.get("code"):
        first = (dump.read_text().strip().splitlines() or [""])[0]
        return {"threads": f"no dump: py-spy exited {info['code']}: {first}"}
    text = dump.read_text()
    found = summarize_threads(text)
    at = f"after {info['since_s']:.1f} s without a completion, {info.get('in_flight')} in flight"
    out = {"threads": f"{found['diagnosis']} ({at})", "thread_waits": found["waits"]}
    if app_root is not None:
        sites = user_sites(text, app_root)
        out.update(thread_sites=sites["workers"], loop_site=sites["loop"])
    return out


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
