"""`sync-async-lab`: the lab's console script.

    sync-async-lab probe PKG.MODULE:APP --out DIR [--app-dir D] [--factory] [--requests FILE]
                         [--header 'NAME: VALUE' ...] [--routes R,...] [--quick]
                         [--slo p99=500ms,errors=1%] [--unsafe]
    sync-async-lab bench ...      # = python -m loadtests ...
    sync-async-lab report ...     # = python -m analysis report ...
    sync-async-lab compare ...    # = python -m analysis compare ...

Bad input (an app that does not import, an object that is not an ASGI app, a requests file with
an unknown route, a route that answers 4xx/5xx to every probe request) is one line on stderr
and exit code 2; an interrupt stops every child and exits 130, finished cells kept.
"""

import argparse
import signal
import sys
from pathlib import Path

from rich.console import Console

from loadtests import distributed
from loadtests.process import STOP_GRACE_S, on_interrupt, reset_interrupts
from probe.requests import RequestsFileError, parse_header
from probe.run import ProbeInputError, ProbeOptions, probe
from probe.target import Target, TargetError

EXAMPLE = "sync-async-lab probe myapp.main:app --out results/probe-myapp"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def probe_parser(parser: argparse.ArgumentParser) -> None:
    """The options of `sync-async-lab probe`."""
    parser.add_argument("app", help="PKG.MODULE:APP, as uvicorn takes it")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--app-dir", type=Path, default=Path("."), help="put first on sys.path")
    parser.add_argument("--factory", action="store_true", help="APP is a function making the app")
    parser.add_argument("--requests", type=Path, help="TOML of requests (see probe/requests.py)")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="send with every request, e.g. 'Authorization: Bearer ...' (repeatable)",
    )
    parser.add_argument("--routes", type=_csv, default=[], help="only these routes (comma list)")
    parser.add_argument("--quick", action="store_true", help="fewer cells: under 3 minutes")
    parser.add_argument("--slo", default="p99=500ms,errors=1%", help="capacity at this SLO")
    parser.add_argument("--unsafe", action="store_true", help="probe POST/PUT/PATCH/DELETE too")
    parser.add_argument("--users", type=lambda t: [int(x) for x in _csv(t)], help="user levels")
    parser.add_argument("--stall", type=float, help="no completion for this long: stalled, s")
    parser.add_argument("--block-ms", type=float, help="loop held this long: an episode, ms")
    parser.add_argument("--resume", action="store_true", help="keep cells already measured")
    parser.add_argument("--dry-run", action="store_true", help="inventory, smoke and plan only")
    distributed.add_cli_args(parser)


def run_probe(args: argparse.Namespace) -> int:
    """`sync-async-lab probe`: bad input is one line and exit code 2."""
    console = Console(highlight=False)
    try:
        target = Target(args.app, args.app_dir, args.factory)
        options = ProbeOptions(
            target=target,
            out=args.out,
            requests=args.requests,
            headers=dict(parse_header(h) for h in args.header),
            routes=args.routes,
            quick=args.quick,
            slo=args.slo,
            unsafe=args.unsafe,
            resume=args.resume,
            dry_run=args.dry_run,
            users=args.users,
            stall_s=args.stall,
            block_ms=args.block_ms,
            load_hosts=distributed.from_cli_args(args),
        )
        options.settings()
        done_before = list(args.out.glob("*/cell.json")) if args.out.exists() else []
        if done_before and not args.resume and not args.dry_run:
            raise ProbeInputError(
                f"{args.out} already holds {len(done_before)} cells: use --resume"
            )
        reset_interrupts()
        previous = {s: signal.signal(s, on_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = probe(options, console)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    except (TargetError, RequestsFileError, ProbeInputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        console.print(
            f"[red]interrupted[/]: children stopped (each within {STOP_GRACE_S:g} s); finished "
            f"cells kept in {args.out}; go on with --resume",
            soft_wrap=True,
        )
        return 130
    if not args.dry_run:
        from analysis.__main__ import main as analysis_main

        report = analysis_main(["report", str(args.out)])
        code = code or report
    return code


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the sub-command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        from loadtests.cli import main as bench

        return bench(argv[1:])
    if argv and argv[0] in ("report", "compare"):
        from analysis.__main__ import main as analysis_main

        return analysis_main(argv)
    parser = argparse.ArgumentParser(
        prog="sync-async-lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    probe_parser(
        sub.add_parser("probe", help="def or async def for YOUR app's routes", epilog=EXAMPLE)
    )
    sub.add_parser("bench", help="run a benchmark matrix (python -m loadtests)")
    sub.add_parser("report", help="write a run's report (python -m analysis report)")
    sub.add_parser("compare", help="compare two runs (python -m analysis compare)")
    args = parser.parse_args(argv)
    return run_probe(args)


if __name__ == "__main__":
    sys.exit(main())
