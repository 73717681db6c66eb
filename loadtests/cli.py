"""`python -m loadtests`: run a benchmark matrix and leave a results folder (results/README.md)."""

import argparse
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from contract import DEFAULT_SERVER, SERVERS
from loadtests import distributed
from loadtests.context import RunContext
from loadtests.distributed import LoadHosts
from loadtests.matrix import MatrixSpec
from loadtests.plan import plan_cell
from loadtests.process import STOP_GRACE_S, Pinning, on_interrupt, reset_interrupts
from loadtests.runner import plan_cells, run_matrix


def _csv(kind: type) -> Any:
    return lambda text: [kind(x) for x in text.split(",") if x]


# CLI name -> (MatrixSpec field, type, help); None means "keep the matrix file's value".
OVERRIDES: dict[str, tuple[str, Any, str]] = {
    "scenarios": ("scenarios", _csv(str), "comma-separated scenarios"),
    "variants": ("variants", _csv(str), "comma-separated server variants"),
    "async-clients": ("async_clients", _csv(str), "HTTP clients of the async variant"),
    "sync-clients": ("sync_clients", _csv(str), "HTTP clients of sync and blocking"),
    "servers": (
        "servers",
        _csv(str),
        f"comma-separated ASGI servers: {', '.join(SERVERS)} (default {DEFAULT_SERVER})",
    ),
    "users": (
        "users",
        _csv(int),
        "comma-separated user levels (closed loop; with --rate and no --users: none)",
    ),
    "rate": ("rates", _csv(int), "open loop: offered rates, req/s (with --slo: the search ladder)"),
    "slo": ("slo", str, "search each variant's capacity at this SLO, e.g. p99=500ms,errors=1%%"),
    "arrivals": ("arrivals", str, "rate mode arrivals: poisson (default) or constant"),
    "rate-slots": ("rate_slots", int, "rate mode: most requests in flight (connections)"),
    "bisect-steps": ("bisect_steps", int, "capacity search: bisection steps after the ladder"),
    "duration": ("duration_s", float, "shortest measured window per cell, s"),
    "window-max": ("window_max_s", float, "longest window, s (closes early on --sample-target)"),
    "sample-target": ("sample_target", int, "close the window once n requests completed"),
    "stall": ("stall_s", float, "no completion for this long with requests in flight: stalled"),
    "warmup": ("warmup_s", float, "warm-up seconds per cell, excluded from the numbers"),
    "warmup-max": ("warmup_max_s", float, "warm up until every user completed a request, max s"),
    "repeats": ("repeats", int, "passes over the matrix (interleaved)"),
    "spawn-rate": ("spawn_rate", float, "users started per second"),
    "grace": ("grace_s", float, "longest drain after the window; what is left is censored"),
    "ttft-ms": ("ttft_ms", float, "upstream time to first token"),
    "itl-ms": ("itl_ms", float, "upstream inter-token latency"),
    "chat-tokens": ("chat_tokens", int, "output tokens of chat / mixed"),
    "stream-tokens": ("stream_tokens", int, "output tokens of chat_stream"),
    "cpu-ms": ("cpu_ms", int, "CPU milliseconds per /cpu request"),
    "db-wait-ms": ("db_wait_ms", int, "items_wait: how long each query waits in the database"),
    "threadpool-tokens": (
        "threadpool_tokens",
        _csv(int),
        "anyio thread tokens in the server (several: a sweep)",
    ),
}


@dataclass
class BenchOptions:
    """Everything `python -m loadtests` accepts."""

    out: Path
    matrix: Path | None = None
    resume: bool = False
    dry_run: bool = False
    locust_processes: int = 1
    target: str | None = None
    overrides: dict[str, Any] | None = None
    load_hosts: LoadHosts | None = None

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        """Add the options to `parser`."""
        parser.add_argument("--matrix", type=Path, help="matrix TOML (default: built-in)")
        parser.add_argument("--out", type=Path, required=True, help="results/<run-id>")
        parser.add_argument("--resume", action="store_true", help="skip cells already done")
        parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
        parser.add_argument(
            "--locust-processes", type=int, default=1, help="Locust --processes (distributed)"
        )
        parser.add_argument(
            "--target", help="benchmark this already-running server URL (no local server)"
        )
        distributed.add_cli_args(parser)
        group = parser.add_argument_group("matrix overrides")
        for name, (_, kind, help_) in OVERRIDES.items():
            group.add_argument(f"--{name}", type=kind, help=help_)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> "BenchOptions":
        """Build the options from parsed arguments."""
        overrides = {
            dest: getattr(args, name.replace("-", "_")) for name, (dest, _, _) in OVERRIDES.items()
        }
        if overrides["rates"] and overrides["users"] is None:
            # `--rate` alone asks for rate cells: no closed-loop user levels beside them.
            overrides["users"] = []
        return cls(
            out=args.out,
            matrix=args.matrix,
            resume=args.resume,
            dry_run=args.dry_run,
            locust_processes=args.locust_processes,
            target=args.target.rstrip("/") if args.target else None,
            overrides=overrides,
            load_hosts=distributed.from_cli_args(args),
        )

    def spec(self) -> MatrixSpec:
        """The matrix file with the CLI overrides applied."""
        overrides = self.overrides or {}
        if self.matrix is None:
            return MatrixSpec().with_overrides(**overrides)
        return MatrixSpec.from_toml(self.matrix, **overrides)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, print the plan and estimate, run the matrix."""
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__)
    BenchOptions.add_cli_args(parser)
    try:
        options = BenchOptions.from_cli_args(parser.parse_args(argv))
        spec = options.spec()
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    if options.load_hosts is not None and options.locust_processes > 1:
        parser.error("--locust-hosts and --locust-processes: give one (workers per host instead)")
    console = Console(highlight=False)
    done_before = list(options.out.glob("*/cell.json")) if options.out.exists() else []
    if done_before and not options.resume and not options.dry_run:
        parser.error(f"{options.out} already holds {len(done_before)} cells: use --resume")
    ctx = RunContext(
        out=options.out,
        pinning=Pinning.plan(),
        target=options.target,
        locust_processes=options.locust_processes,
        load_hosts=options.load_hosts,
    )
    cells, todo = plan_cells(spec, options.out, options.resume)
    try:
        spec.check_target(options.target)
    except ValueError as exc:
        parser.error(str(exc))
    minutes = spec.estimate_s(todo) / 60
    console.print(
        f"{len(todo)} of {len(cells)} cells to run"
        f"{f' and {len(spec.searches())} capacity searches' if spec.slo else ''}, "
        f"estimated {minutes:.1f} min; "
        f"ASGI server{'s' if len(spec.servers) > 1 else ''} {', '.join(spec.servers)}; "
        f"pinning server={ctx.pinning.server} load={ctx.pinning.load}; results in {options.out}",
        soft_wrap=True,
    )
    if options.dry_run:
        for cell in todo:
            host = options.target or "http://127.0.0.1:<port>"
            plan = plan_cell(cell, spec, ctx)
            cmd = " ".join(plan.locust_command(ctx, host))
            eta = spec.cell_seconds(cell)
            server = (
                f"\n  server: {' '.join(plan.server.command)}" if options.target is None else ""
            )
            console.print(f"{cell.cell_id} ~{eta:.0f}s{server}\n  {cmd}", soft_wrap=True)
        for scenario, variant, client, repeat in spec.searches():
            eta = spec.search_seconds(scenario, variant, client, repeat)
            console.print(
                f"capacity search {scenario} {variant}-{client} r{repeat} at {spec.slo}: "
                f"ladder {spec.rates} req/s, then {spec.bisect_steps} bisection steps, ~{eta:.0f}s",
                soft_wrap=True,
            )
        return 0
    # Ctrl-C and SIGTERM alike: every child gets SIGTERM at once, then SIGKILL after its grace
    # (a second signal: at once); finished cells are kept.
    reset_interrupts()
    previous = {sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        results = run_matrix(spec, ctx, resume=options.resume, console=console)
    except KeyboardInterrupt:
        console.print(
            f"[red]interrupted[/]: children stopped (each within {STOP_GRACE_S:g} s); finished "
            f"cells kept in {options.out}; go on with --resume",
            soft_wrap=True,
        )
        return 130
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    failed = sum(not r.ok for r in results)
    invalid = sum(r.ok and not r.valid for r in results)
    stalled = sum(r.stalled for r in results)
    unsteady = sum(r.metrics.steady is False for r in results)
    console.print(
        f"done: {len(results)} cells, {failed} failed, {invalid} invalid, {stalled} stalled, "
        f"{unsteady} not steady; "
        f"{options.out / 'summary.csv'}",
        soft_wrap=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
