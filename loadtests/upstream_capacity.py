"""How many requests per second the mock upstream serves on one core (issue 2 asks >= 3,000).

`python -m loadtests.upstream_capacity`: the upstream pinned to one core, Locust (FastHttpUser)
on the others, non-streaming completions of one token after 50 ms.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from contract import LOADGEN_MAX_PCT
from loadtests.locust_runner import Clock, locust_command, merge_raw, wait_locust
from loadtests.process import CpuSampler, Pinning, run_server, spawn
from loadtests.scenarios import Scenario
from loadtests.summary import load_requests, summarize_requests

# The proxies and the mock share the chat route, so the chat user drives the mock as it is.
UPSTREAM = Scenario("upstream", "chat.py", ("ChatUser",))


def capacity_command(
    url: str, users: int, duration_s: float, warmup_s: float, ttft_ms: float, out: Path
) -> list[str]:
    """The Locust command: the chat user against the bare upstream, a fixed window."""
    clock = Clock(
        warmup_s=warmup_s,
        window_min_s=duration_s,
        window_max_s=duration_s,
        sample_target=0,
        grace_s=5,
        stall_s=5,
    )
    return locust_command(
        UPSTREAM,
        host=url,
        users=users,
        spawn_rate=max(users, 1),
        clock=clock,
        cell_dir=out,
        # The mock upstream has no /ready: it is bare Starlette with /health.
        options={"max_tokens": 1, "ttft_ms": ttft_ms, "itl_ms": 0, "ready_path": "/health"},
        python=sys.executable,
    )


def measure(out: Path, users: int, duration_s: float, warmup_s: float, ttft_ms: float) -> dict:
    """Drive the upstream for warm-up + duration; return req/s, latency and CPU figures."""
    out.mkdir(parents=True, exist_ok=True)
    # The upstream gets the "server" core here: it is the thing under test.
    pinning = Pinning.plan()
    with (
        CpuSampler() as sampler,
        run_server(
            "upstream", out / "upstream.log", cpus=pinning.server, python=sys.executable
        ) as (upstream, url),
    ):
        sampler.watch("upstream", upstream.pid)
        cmd = capacity_command(url, users, duration_s, warmup_s, ttft_ms, out)
        with spawn(cmd, out / "locust.log", cpus=pinning.load) as locust:
            sampler.watch("loadgen", locust.pid)
            run = wait_locust(locust, warmup_s + duration_s + 60)
    raw, meta = merge_raw(out)
    if not run.ok or meta["window_end"] is None:
        raise RuntimeError(f"Locust failed ({run}); see {out / 'locust.log'}")
    start, end = meta["window_start"], meta["window_end"]
    return {
        **summarize_requests(load_requests(raw), start, end),
        "upstream_cpu_pct": sampler.percent("upstream", start, end),
        "loadgen_cpu_pct": sampler.percent("loadgen", start, end),
        "pinning": pinning.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and print the upstream's capacity."""
    prog = "python -m loadtests.upstream_capacity"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--ttft-ms", type=float, default=50.0, help="the upstream's latency")
    parser.add_argument("--out", type=Path, help="keep Locust's files here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="upstream-capacity-") as tmp:
        out = args.out or Path(tmp)
        r = measure(out, args.users, args.duration, args.warmup, args.ttft_ms)
    ideal = args.users / (args.ttft_ms / 1000)
    print(
        f"mock upstream, {args.users} users, {args.ttft_ms:g} ms: {r['rps']:.0f} req/s "
        f"(ideal {ideal:.0f}), p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"{r['failures']} failures; upstream CPU {r['upstream_cpu_pct']:.0f}% of its core, "
        f"Locust CPU {r['loadgen_cpu_pct']:.0f}%; pinning {r['pinning']}"
    )
    if r["loadgen_cpu_pct"] is not None and r["loadgen_cpu_pct"] > LOADGEN_MAX_PCT:
        # Then the number is Locust's ceiling; the upstream's own is its rate per CPU share.
        per_core = r["rps"] / max(r["upstream_cpu_pct"] or 0.0, 1.0) * 100
        print(
            f"Locust saturated its core: the upstream's capacity is above this; at its measured "
            f"CPU share it would serve about {per_core:.0f} req/s on a full core"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
