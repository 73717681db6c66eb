"""Locust's distributed mode, the lab's way: each worker's rows reach the master over Locust's own
channel, and the master ends a cell only when every worker's rows are in.

A worker (a `--processes` fork, or a process on another load host started by the orchestrator)
keeps its rows as any Locust process does (common.Recorder) and, when its drain is over
(`test_stop`), sends them to the master as one `lab_rows` message with its facts: its host
(`LAB_LOAD_HOST`, set by the orchestrator), its index, its own CPU and its host's, sampled
every `CPU_TICK_S` from its start, and its kernel's boot id (which machine it is on). The master
writes each worker's `requests.w<i>.csv` and `meta.w<i>.json` into the cell's raw folder, as a
local process would, so the orchestrator merges them as before (locust_runner.merge_raw).
Nothing is read from a worker's disk: a host that shares no file system with the master works
the same.

At the window's end the master tells the workers (`lab_window`: a rate schedule closes there),
stops them (each drains by the lab's rules, the grace and the stall threshold, on its own
requests), and waits up to the drain's bound plus `ROWS_WAIT_S` for their rows. A worker that
sent none (its host died mid-cell, its process was killed) is listed in `lost_workers` with the
host it announced (`lab_hello`), and the orchestrator fails the cell with that reason: rows are
never silently missing. Why not Locust's own stats: they are aggregated and rounded, and the lab
needs every request's outcome.
"""

import os
import socket
import time
from pathlib import Path
from typing import Any

import gevent
import psutil
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.distributed import HOST_ENV, boot_id

# How often a worker samples its own CPU and its host's.
CPU_TICK_S = 0.25
# After the workers stopped, how long the master waits for rows still on their way.
ROWS_WAIT_S = 10.0

# The master's view: worker index -> announced host, and the rows' facts received.
HELLO: dict[int, str] = {}
RECEIVED: dict[int, dict[str, Any]] = {}
CPU: list[tuple[float, float, float]] = []


def configure(environment: Environment) -> None:
    """Register the lab's messages on a master or a worker (called from common's init)."""
    from loadtests.locustfiles import common

    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message("lab_rows", receive_rows)
        runner.register_message("lab_hello", receive_hello)
    elif isinstance(runner, WorkerRunner):
        runner.register_message("lab_window", receive_window)
        common.STATE.send_rows = lambda recorder: send_rows(runner, recorder)
        gevent.spawn(sample_cpu)


def sample_cpu() -> None:
    """(time, this process's CPU seconds, the host's busy %) every CPU_TICK_S."""
    me = psutil.Process()
    psutil.cpu_percent(None)
    while True:
        times = me.cpu_times()
        CPU.append((time.time(), times.user + times.system, psutil.cpu_percent(None)))
        gevent.sleep(CPU_TICK_S)


def host_name() -> str:
    """The load host as the orchestrator named it, else the machine's name."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


def hello(runner: WorkerRunner) -> None:
    """Tell the master who this worker is, once it has an index."""
    runner.send_message("lab_hello", {"index": runner.worker_index, "host": host_name()})


def send_rows(runner: WorkerRunner, recorder: Any) -> None:
    """The worker's rows and facts, in one message to the master."""
    meta = {
        **recorder.meta,
        "host": host_name(),
        "boot_id": boot_id(),
        "worker_index": runner.worker_index,
        "cpu_samples": list(CPU),
    }
    runner.send_message(
        "lab_rows", {"index": runner.worker_index, "rows": recorder.csv_text(), "meta": meta}
    )


def receive_hello(environment: Environment, msg: Any) -> None:
    """Master: a worker's index and host."""
    HELLO[int(msg.data["index"])] = str(msg.data["host"])


def receive_rows(environment: Environment, msg: Any) -> None:
    """Master: write a worker's rows as a local process would have."""
    from loadtests.locustfiles import common

    index = int(msg.data["index"])
    meta = msg.data["meta"]
    RECEIVED[index] = meta
    HELLO.setdefault(index, str(meta.get("host", "")))
    if common.STATE.raw_dir:
        common.write_rows(Path(common.STATE.raw_dir), f"w{index}", msg.data["rows"], meta)


def receive_window(environment: Environment, msg: Any) -> None:
    """Worker: the window as the master kept it; a rate schedule closes at its end."""
    from loadtests.locustfiles import common

    recorder = common.STATE.recorder
    recorder.window_start = recorder.meta["window_start"] = msg.data["start"]
    recorder.meta["window_end"] = msg.data["end"]
    if common.STATE.open_loop is not None:
        common.STATE.open_loop.closed_at = msg.data["end"]


def end_window(runner: MasterRunner, opts: Any, start: float, end: float) -> None:
    """Master, at the window's end: tell the workers, stop them, wait for every worker's rows,
    and record in the master's facts which workers, on which hosts, sent none."""
    from loadtests.locustfiles import common

    runner.send_message("lab_window", {"start": start, "end": end})
    stopping = gevent.spawn(runner.stop)
    stopping.join(timeout=opts.grace_seconds + ROWS_WAIT_S)
    deadline = time.time() + ROWS_WAIT_S
    while len(RECEIVED) < opts.lab_workers and time.time() < deadline:
        gevent.sleep(0.05)
    meta = common.STATE.recorder.meta
    meta["workers_expected"] = opts.lab_workers
    lost = [i for i in range(opts.lab_workers) if i not in RECEIVED]
    meta["lost_workers"] = [{"index": i, "host": HELLO.get(i, "unknown")} for i in lost]


def announce(environment: Environment) -> None:
    """Worker, at its test's start: say hello (its index is known by then)."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        hello(runner)
