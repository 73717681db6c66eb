"""`python -m probe.serve PKG.MODULE:APP --port N [--arm JSON]`: the user's app under the lab.

The arm's flips are installed before the app is imported (FastAPI fixes a route's style when it
builds it: probe/arms.py), the app is imported as uvicorn does (probe/target.py), the arm's
dependency limits are set, and the app is served by uvicorn with uvloop and httptools, as the
lab's own apps are, wrapped in the lab's instrumentation (probe/instrument.py). A bad target
prints one line on stderr and exits 2 before anything listens.
"""

import argparse
import sys
from pathlib import Path

import uvicorn

from probe.arms import Arm, install_flips, limit_dependencies
from probe.instrument import FoundPools, Instrumented, route_codes
from probe.target import Target, TargetError, load
from probe.watch import THRESHOLD_S, LoopWatch


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve the app until stopped."""
    parser = argparse.ArgumentParser(prog="python -m probe.serve", description=__doc__)
    parser.add_argument("app")
    parser.add_argument("--app-dir", type=Path, default=Path("."))
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--arm", default="{}", help="the arm, as probe.arms.Arm.to_json writes it")
    parser.add_argument("--block-ms", type=float, default=THRESHOLD_S * 1000)
    parser.add_argument("--blocking-file", type=Path, help="where the loop sampler writes")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        arm = Arm.from_json(args.arm)
        target = Target(args.app, args.app_dir, args.factory)
        install_flips(arm.flip)
        pools = FoundPools()
        pools.track()
        app = load(target)
        found = limit_dependencies(app, arm.max_concurrency)
    except (TargetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if missing := [name for name, n in found.items() if not n]:
        print(f"error: the arm limits {missing}, which no route depends on", file=sys.stderr)
        return 2
    watch = LoopWatch(target.app_dir, route_codes(app), args.block_ms / 1000, args.blocking_file)
    uvicorn.run(
        Instrumented(app, watch, pools, arm.tokens),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level=args.log_level,
        access_log=False,
        # A stalled app never finishes its requests: stop after a second, not the harness's 5.
        timeout_graceful_shutdown=1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
