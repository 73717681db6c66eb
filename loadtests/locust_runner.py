"""Locust as a headless subprocess: the command line, a bounded run, and its raw files merged."""

import csv
import json
import math
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.process import kill_group, spawn
from loadtests.scenarios import Scenario

# Locust imports, spawns and writes its reports around the run itself.
STARTUP_SLACK_S = 30.0
WAIT_FOR_HOST_S = 30.0
RUN_TIME_BACKSTOP_S = 2
RAW_COLUMNS = ("ts", "kind", "name", "latency_ms", "ok", "app_ms", "upstream_ms", "db_ms")


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


def locust_command(
    scenario: Scenario,
    host: str,
    users: int,
    spawn_rate: float,
    run_time_s: float,
    stop_timeout_s: float,
    cell_dir: Path,
    options: dict[str, Any],
    processes: int = 1,
    python: str = "python",
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
        # The locustfile stops the run after exactly --run-seconds; --run-time (whole seconds
        # only) is a backstop.
        "--run-seconds",
        f"{run_time_s:g}",
        "--run-time",
        f"{math.ceil(run_time_s) + RUN_TIME_BACKSTOP_S}s",
        # Users finish the request they are in before stopping, up to this bound.
        "--stop-timeout",
        f"{math.ceil(stop_timeout_s)}s",
        "--csv",
        str(cell_dir / "locust"),
        "--csv-full-history",
        "--html",
        str(cell_dir / "locust.html"),
        "--exit-code-on-error",
        "0",
        "--raw-dir",
        str(cell_dir),
        # Locust starts while the server does; it waits for /health before the clock starts.
        "--wait-for-host",
        f"{WAIT_FOR_HOST_S:g}",
    ]
    if processes > 1:
        cmd += ["--processes", str(processes)]
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


def run_locust(
    cmd: Sequence[str],
    log_path: Path,
    timeout_s: float,
    cpus: Sequence[int] | None = None,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> LocustRun:
    """Run Locust to completion, killing its process group after `timeout_s`."""
    with spawn(cmd, log_path, cpus=cpus) as proc:
        if on_start is not None:
            on_start(proc)
        return wait_locust(proc, timeout_s)


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

    return {
        "processes": len(metas),
        "test_start": pick("test_start", min),
        "test_stopping": pick("test_stopping", min),
        "test_stop": pick("test_stop", max),
        "spawned": pick("spawned", max),
        "spawning_complete": pick("spawning_complete", max),
        "cut_off": sum(m.get("cut_off", 0) for m in metas),
    }
