"""Locust as a headless subprocess: the command line, a bounded run, and its raw files merged."""

import csv
import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import RAW_COLUMNS
from loadtests.process import kill_group
from loadtests.scenarios import Scenario

# Locust imports, spawns and writes its reports around the run itself.
STARTUP_SLACK_S = 30.0
WAIT_FOR_HOST_S = 30.0
RUN_TIME_BACKSTOP_S = 2


@dataclass(frozen=True)
class LocustRun:
    """How a Locust subprocess ended."""

    returncode: int | None
    timed_out: bool
    wall_s: float

    @property
    def ok(self) -> bool:
        """Finished by itself; exit code 1 only means some requests failed."""
        return not self.timed_out and self.returncode in (0, 1)


@dataclass(frozen=True)
class Clock:
    """A cell's timeline, kept by the locustfile (loadtests/locustfiles/common.py)."""

    warmup_s: float
    window_min_s: float
    window_max_s: float
    sample_target: int
    grace_s: float
    stall_s: float
    # The warm-up waits for every user to complete a request, up to this (0: exactly warmup_s).
    warmup_max_s: float = 0.0

    @property
    def run_s(self) -> float:
        """The longest the load runs before the drain: the longest warm-up and window."""
        return max(self.warmup_s, self.warmup_max_s) + max(self.window_min_s, self.window_max_s)

    @property
    def longest_s(self) -> float:
        """The longest a cell's load can last: warm-up, longest window, longest drain."""
        return self.run_s + self.grace_s


def locust_command(
    scenario: Scenario,
    host: str,
    users: int,
    spawn_rate: float,
    clock: Clock,
    cell_dir: Path,
    options: dict[str, Any],
    processes: int = 1,
    python: str = "python",
    master: list[str] | None = None,
) -> list[str]:
    """The `python -m locust` command of one cell (headless, CSVs, HTML, raw rows)."""
    cmd = [
        python,
        "-m",
        "locust",
        "-f",
        str(scenario.path),
        *scenario.user_classes,
        "--headless",
        "--only-summary",
        "--host",
        host,
        "--users",
        str(users + scenario.extra_users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        # The locustfile closes the window itself (sample target or --window-max) and drains;
        # --run-time and --stop-timeout (whole seconds only) are backstops.
        "--warmup-seconds",
        f"{clock.warmup_s:g}",
        "--warmup-max",
        f"{clock.warmup_max_s:g}",
        "--window-min",
        f"{clock.window_min_s:g}",
        "--window-max",
        f"{clock.window_max_s:g}",
        "--sample-target",
        str(clock.sample_target),
        "--grace-seconds",
        f"{clock.grace_s:g}",
        "--stall-seconds",
        f"{clock.stall_s:g}",
        "--run-time",
        f"{math.ceil(clock.run_s) + RUN_TIME_BACKSTOP_S}s",
        "--stop-timeout",
        f"{math.ceil(clock.grace_s) + RUN_TIME_BACKSTOP_S}s",
        "--csv",
        str(cell_dir / "locust"),
        "--csv-full-history",
        "--html",
        str(cell_dir / "locust.html"),
        "--exit-code-on-error",
        "0",
        "--raw-dir",
        str(cell_dir),
        # Locust starts while the server does; it waits for /ready before the clock starts.
        "--wait-for-host",
        f"{WAIT_FOR_HOST_S:g}",
    ]
    if processes > 1:
        # Forked workers send their rows to the master like remote ones (locustfiles/remote.py).
        cmd += ["--processes", str(processes), "--lab-workers", str(processes)]
    if master:
        # A master of workers on other hosts (loadtests/distributed.py).
        cmd += master
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def wait_locust(proc: subprocess.Popen[bytes], timeout_s: float) -> LocustRun:
    """Wait for a started Locust; a hung one is killed (with its workers) after `timeout_s`."""
    start = time.monotonic()
    try:
        code: int | None = proc.wait(timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(proc)
        code, timed_out = None, True
    return LocustRun(code, timed_out, time.monotonic() - start)


def merge_raw(cell_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Merge the per-process `requests.<pid>.csv` and `meta.<pid>.json` files of a cell."""
    out = cell_dir / "requests.csv"
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RAW_COLUMNS)
        for part in sorted(cell_dir.glob("requests.*.csv")):
            if part == out:
                continue
            with open(part, newline="") as src:
                writer.writerows(csv.reader(src))
            part.unlink()
    metas = []
    for part in sorted(cell_dir.glob("meta.*.json")):
        metas.append(json.loads(part.read_text()))
        part.unlink()
    return out, merge_meta(metas)


def merge_meta(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's facts from every Locust process (master and workers)."""

    def pick(key: str, how: Callable[..., Any]) -> Any:
        values = [m[key] for m in metas if m.get(key) is not None]
        return how(values) if values else None

    stalled = [m["stalled"] for m in metas if m.get("stalled")]
    # A distributed run: each worker's host, rows and CPU samples, and the workers that sent none.
    workers = [
        {
            k: m.get(k)
            for k in (
                "host",
                "worker_index",
                "pid",
                "rows",
                "cpu_samples",
                "boot_id",
                "stalled",
                "open_loop",
            )
        }
        for m in metas
        if m.get("host")
    ]
    return {
        "processes": len(metas),
        "test_start": pick("test_start", min),
        "window_start": pick("window_start", min),
        "window_end": pick("window_end", max),
        "window_samples": pick("window_samples", max),
        "users_in_loop": pick("users_in_loop", min),
        "test_stopping": pick("test_stopping", min),
        "test_stop": pick("test_stop", max),
        "last_completion": pick("last_completion", max),
        "drain_s": pick("drain_s", max),
        "in_flight_at_end": sum(m.get("in_flight_at_end") or 0 for m in metas),
        "stalled": stalled[0] if stalled else None,
        "thread_dumps": pick("thread_dumps", lambda v: v[0]),
        "not_ready": pick("not_ready", min),
        "spawned": pick("spawned", max),
        "spawning_complete": pick("spawning_complete", max),
        "cut_off": sum(m.get("cut_off", 0) for m in metas),
        "open_loop": pick("open_loop", lambda v: v[0]),
        "slots_full_at": [t for m in metas for t in m.get("slots_full_at") or []],
        "workers": workers,
        "workers_expected": pick("workers_expected", max),
        "lost_workers": [w for m in metas for w in m.get("lost_workers") or []],
    }
