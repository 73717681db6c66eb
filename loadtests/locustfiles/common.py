"""What every locustfile shares: the lab's options, raw per-request rows and response checks.

Each Locust process writes `requests.<pid>.csv` and `meta.<pid>.json` into `--raw-dir`;
the orchestrator merges them (several files because `--processes` forks workers).
"""

import csv
import functools
import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from gevent import GreenletExit
from locust import events
from locust.env import Environment
from locust.exception import RescheduleTaskImmediately
from locust.runners import WorkerRunner

RAW_COLUMNS = ("ts", "kind", "name", "latency_ms", "ok", "app_ms", "upstream_ms", "db_ms")
NO_TIMING = ("", "", "")


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("sync-async lab")
    group.add_argument("--raw-dir", default="", help="folder for raw per-request rows")
    group.add_argument("--max-tokens", type=int, default=1, help="chat completion tokens")
    group.add_argument("--ttft-ms", type=float, default=50.0, help="x-mock-ttft-ms")
    group.add_argument("--itl-ms", type=float, default=10.0, help="x-mock-itl-ms")
    group.add_argument("--cpu-ms", type=int, default=2, help="GET /cpu?n=")
    group.add_argument("--seed-rows", type=int, default=10_000, help="item ids to read")
    group.add_argument("--request-timeout", type=float, default=300.0, help="seconds")
    group.add_argument("--run-seconds", type=float, default=0.0, help="run time, any fraction")
    group.add_argument("--wait-for-host", type=float, default=0.0, help="seconds, for /health")


class Recorder:
    """Raw rows and run facts of this process, kept per pid so forked workers get their own."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.rows: list[tuple[float, str, str, float, bool, tuple[str, str, str]]] = []
        self.meta: dict[str, Any] = {"cut_off": 0}

    def reset(self) -> None:
        """Start empty (in a freshly forked Locust worker)."""
        self.pid = os.getpid()
        self.rows = []
        self.meta = {"cut_off": 0}

    def row(
        self,
        ts: float,
        kind: str,
        name: str,
        latency_ms: float,
        ok: bool,
        timing: tuple[str, str, str] = NO_TIMING,
    ) -> None:
        """Keep one raw row; rows are formatted after the run, not while measuring."""
        self.rows.append((ts, kind, name, latency_ms, ok, timing))

    def close(self) -> None:
        """Write this process's rows and facts into the raw folder."""
        if not RAW_DIR:
            return
        with open(Path(RAW_DIR) / f"requests.{self.pid}.csv", "w", newline="") as f:
            csv.writer(f).writerows(
                (f"{ts:.6f}", kind, name, f"{ms:.3f}", int(ok), *timing)
                for ts, kind, name, ms, ok, timing in self.rows
            )
        self.meta["pid"] = self.pid
        self.meta["rows"] = len(self.rows)
        (Path(RAW_DIR) / f"meta.{self.pid}.json").write_text(json.dumps(self.meta))


RAW_DIR = ""
RECORDER = Recorder()
# `--processes` forks workers after this module is imported: each must record its own rows.
os.register_at_fork(after_in_child=RECORDER.reset)


@events.init.add_listener
def _configure(environment: Environment, **_: Any) -> None:
    global RAW_DIR
    opts = environment.parsed_options
    if opts is None:
        return
    RAW_DIR = opts.raw_dir
    for user_class in environment.user_classes:
        # A queue of users x latency must be measured, not cut short by Locust's 60 s default.
        user_class.network_timeout = opts.request_timeout
        user_class.connection_timeout = opts.request_timeout
    if opts.wait_for_host and opts.host:
        # Blocks before the run starts, so the server's start-up is not counted as run time.
        wait_for_host(f"{opts.host.rstrip('/')}/health", opts.wait_for_host)


def wait_for_host(url: str, timeout: float) -> bool:
    """Poll `url` until it answers 200 or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return True
        except (OSError, ValueError):
            pass
        gevent.sleep(0.05)
    return False


@events.test_start.add_listener
def _test_start(environment: Environment, **_: Any) -> None:
    RECORDER.meta["test_start"] = time.time()
    opts = environment.parsed_options
    runner = environment.runner
    if opts is not None and opts.run_seconds and not isinstance(runner, WorkerRunner):
        # Locust's --run-time takes whole seconds only; this stops the run the same way it does.
        gevent.spawn_later(opts.run_seconds, runner.quit)


@events.spawning_complete.add_listener
def _spawned(user_count: int, **_: Any) -> None:
    RECORDER.meta["spawned"] = max(user_count, RECORDER.meta.get("spawned", 0))
    RECORDER.meta["spawning_complete"] = time.time()


@events.test_stopping.add_listener
def _test_stopping(**_: Any) -> None:
    # The run time is over: this is the end of the measured window.
    RECORDER.meta.setdefault("test_stopping", time.time())


@events.test_stop.add_listener
def _test_stop(**_: Any) -> None:
    RECORDER.meta["test_stop"] = time.time()


@events.quitting.add_listener
def _quitting(**_: Any) -> None:
    RECORDER.close()


def server_timing(value: str | None) -> tuple[str, str, str]:
    """(app, upstream, db) milliseconds of a `Server-Timing` header, as sent; empty if absent."""
    if not value:
        return NO_TIMING
    durations = {}
    for part in value.split(","):
        name, _, duration = part.strip().partition(";dur=")
        durations[name] = duration
    return durations.get("app", ""), durations.get("upstream", ""), durations.get("db", "")


@events.request.add_listener
def _record(
    request_type: str,
    name: str,
    response_time: float,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
    start_time: float | None = None,
    response: Any = None,
    **_: Any,
) -> None:
    kind = (context or {}).get("kind", "request")
    label = (context or {}).get("label", f"{request_type} {name}")
    ts = start_time if start_time is not None else time.time() - response_time / 1000
    headers = getattr(response, "headers", None)
    timing = server_timing(headers.get("server-timing")) if headers else NO_TIMING
    RECORDER.row(ts, kind, label, response_time, exception is None, timing)


def back_to_back(task: Callable[[Any], None]) -> Callable[[Any], None]:
    """Run a task in a closed loop without Locust's wait() between runs.

    A user stopped while in wait() is killed at once, and with a zero wait the kill often lands
    after it woke, in the middle of its next request (seen: 50 of 200 users cut off). A user
    that never waits is only ever asked to stop, and finishes the request it is in.
    """

    @functools.wraps(task)
    def run(user: Any) -> None:
        task(user)
        raise RescheduleTaskImmediately()

    return run


class tracked:  # lower case: reads like the function it replaced in `with tracked(), ...`
    """Count a request as cut off when Locust kills its user before it finishes."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None and issubclass(exc_type, GreenletExit):
            RECORDER.meta["cut_off"] = RECORDER.meta.get("cut_off", 0) + 1


def expect(response: Any, status: int, valid: Callable[[Any], bool]) -> Any:
    """Mark `response` failed unless it has `status` and a JSON body `valid` accepts."""
    if response.status_code != status:
        text = (response.text or "")[:200] if response.status_code else str(response.error)
        response.failure(f"status {response.status_code}: {text}")
        return None
    try:
        # Bytes straight to json: Locust's .text may guess the encoding first.
        body = json.loads(response.content)
        ok = valid(body)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        response.failure(f"bad body ({exc!r}): {(response.text or '')[:200]}")
        return None
    if not ok:
        response.failure(f"unexpected body: {(response.text or '')[:200]}")
        return None
    response.success()
    return body
