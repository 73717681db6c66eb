"""What every locustfile shares: the lab's options, raw per-request rows and response checks.

Each Locust process writes `requests.<pid>.csv` and `meta.<pid>.json` into `--raw-dir`;
the orchestrator merges them (several files because `--processes` forks workers).

Every request a user starts ends in exactly one outcome (contract.OUTCOMES): the request event
gives `ok`, `error` or `timeout`; a request still in flight when the cell ends (its user killed
at the end of the drain, or the process quitting) is written as `censored` with its age then.
`tracked()` keeps the requests in flight for that.

The cell's clock lives here too, so the window can close on a sample target: warm-up, then a
window of at least `--window-min` seconds that ends when `--sample-target` requests started in
it have completed or at `--window-max`, then a drain of up to `--grace-seconds` for the requests
in flight, cut short as a stall when none completes for `--stall-seconds`.

Rate mode (`--rate`, an open loop) keeps each request's *intended* start, as wrk2 does: a
dispatcher greenlet walks a schedule of arrival times (Poisson or constant, seeded) and, at each
one, puts the time in a queue; a free user takes it and sends. A request's row has the intended
time as `ts` and its latency counts from it, so the wait for a free connection (every user busy
with a slow server) and the load generator's own lateness are both inside the latency, and the
send lag is recorded apart (`lag_ms`). Arrivals still queued when the cell ends, never sent, are
written as censored at their age. The users are the connections: `--users` caps the requests in
flight; an arrival due while all of them are busy is recorded in `slots_full`.
"""

import csv
import functools
import io
import json
import os
import random
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import gevent
import gevent.queue
import gevent.subprocess
from gevent import GreenletExit
from locust import events
from locust.env import Environment
from locust.exception import RescheduleTaskImmediately
from locust.runners import WorkerRunner

from contract import ARRIVALS, CENSORED, ERROR, OK, REQUEST_KINDS, TIMEOUT


class Timing(NamedTuple):
    """A response's `Server-Timing` (app, upstream, db), milliseconds as sent; empty if absent."""

    app: str = ""
    upstream: str = ""
    db: str = ""


NO_TIMING = Timing()
# How often the clock and the drain watchdog look.
TICK_S = 0.05
# The second thread dump comes this long before a gap becomes a stall (the run ends there).
STALL_DUMP_LEAD_S = 1.0
# Rate mode: arrival times that found every connection busy, kept in meta.json (the first ones).
FULL_KEPT = 20


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("sync-async lab")
    group.add_argument("--raw-dir", default="", help="folder for raw per-request rows")
    group.add_argument("--max-tokens", type=int, default=1, help="chat completion tokens")
    group.add_argument("--ttft-ms", type=float, default=50.0, help="x-mock-ttft-ms")
    group.add_argument("--itl-ms", type=float, default=10.0, help="x-mock-itl-ms")
    group.add_argument("--cpu-ms", type=int, default=2, help="GET /cpu?n=")
    group.add_argument("--seed-rows", type=int, default=10_000, help="item ids to read")
    group.add_argument("--db-wait-ms", type=int, default=20, help="GET /items/{id}?wait_ms=")
    group.add_argument("--request-timeout", type=float, default=300.0, help="seconds")
    group.add_argument("--warmup-seconds", type=float, default=0.0, help="before the window")
    group.add_argument("--warmup-max", type=float, default=0.0, help="wait for every user, s")
    group.add_argument("--window-min", type=float, default=0.0, help="shortest window, s")
    group.add_argument("--window-max", type=float, default=0.0, help="longest window, s")
    group.add_argument("--sample-target", type=int, default=0, help="close the window at n")
    group.add_argument("--grace-seconds", type=float, default=0.0, help="longest drain, s")
    group.add_argument("--stall-seconds", type=float, default=0.0, help="no completion: stall")
    group.add_argument("--wait-for-host", type=float, default=0.0, help="seconds, for /ready")
    group.add_argument("--ready-path", default="/ready", help="route polled before the start")
    group.add_argument("--server-pid", type=int, default=0, help="for --dump-after")
    group.add_argument("--dump-after", type=float, default=0.0, help="no completion: py-spy, s")
    group.add_argument("--probe-requests", default="", help="probe: JSON file of requests")
    group.add_argument("--start-file", default="", help="start once this file exists")
    group.add_argument(
        "--lab-workers", type=int, default=0, help="distributed: the workers the master expects"
    )
    group.add_argument("--rate", type=float, default=0.0, help="open loop: arrivals per second")
    group.add_argument("--arrivals", default=ARRIVALS[0], choices=ARRIVALS, help="rate mode")
    group.add_argument("--arrival-seed", type=int, default=0, help="rate mode: schedule seed")


@dataclass(slots=True)
class RawRow:
    """One row of requests.csv (contract.RAW_COLUMNS), kept as measured, formatted at the end."""

    ts: float
    kind: str
    name: str
    latency_ms: float
    outcome: str
    timing: Timing = NO_TIMING
    lag_ms: float | None = None

    def csv(self) -> tuple[str, ...]:
        """The row's fields in contract.RAW_COLUMNS order."""
        lag = "" if self.lag_ms is None else f"{self.lag_ms:.3f}"
        ok = str(int(self.outcome == OK))
        return (
            f"{self.ts:.6f}",
            self.kind,
            self.name,
            f"{self.latency_ms:.3f}",
            ok,
            self.outcome,
            *self.timing,
            lag,
        )


@dataclass
class Flight:
    """A request in flight: when it started, what it is, whether its outcome is written."""

    start: float
    kind: str
    label: str
    done: bool = False


class Recorder:
    """Raw rows and run facts of this process, kept per pid so forked workers get their own."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start empty (also in a freshly forked Locust worker)."""
        self.pid = os.getpid()
        self.rows: list[RawRow] = []
        self.meta: dict[str, Any] = {"cut_off": 0}
        self.flights: dict[Any, Flight] = {}
        self.last_completion: float | None = None
        self.window_start: float | None = None
        self.window_samples = 0
        # Users (greenlets) that have completed a request: the loop is closed once all have.
        self.users_done: set[int] = set()
        # Rate mode: each user's intended start of the request it sends now, users waiting for
        # an arrival, and the intended times of arrivals that found none waiting (all busy).
        self.intended: dict[Any, float] = {}
        self.idle = 0
        self.full_at: list[float] = []
        self.closed = False

    def row(
        self,
        ts: float,
        kind: str,
        name: str,
        latency_ms: float,
        outcome: str,
        timing: Timing = NO_TIMING,
        lag_ms: float | None = None,
    ) -> None:
        """Keep one raw row; rows are formatted after the run, not while measuring."""
        self.rows.append(RawRow(ts, kind, name, latency_ms, outcome, timing, lag_ms))

    def completed(self, ts: float, kind: str, outcome: str) -> None:
        """A request's outcome was written: it is no longer in flight."""
        flight = self.flights.get(gevent.getcurrent())
        if flight is not None and flight.kind == kind:
            flight.done = True
        self.users_done.add(id(gevent.getcurrent()))
        if kind == "request":
            self.last_completion = time.time()
            # The sample target counts latency samples: successful requests of the window.
            if outcome == OK and self.window_start is not None and ts >= self.window_start:
                self.window_samples += 1

    def begin(self, kind: str, label: str) -> None:
        """The current user starts a request (in rate mode: at its intended start)."""
        me = gevent.getcurrent()
        self.flights[me] = Flight(self.intended.get(me, time.time()), kind, label)
        if STATE.open_loop is not None and me in self.intended:
            STATE.open_loop.label = label

    def end(self, exc: BaseException | None) -> None:
        """The current user's request is over; write an outcome if none was written."""
        flight = self.flights.pop(gevent.getcurrent(), None)
        if flight is None or flight.done:
            return
        if isinstance(exc, GreenletExit):
            # Killed at the end of the drain: still waiting for its answer.
            self.censor(flight)
        else:
            # An exception escaped (or none was recorded): an error, never a silent gap.
            age_ms = (time.time() - flight.start) * 1000
            self.row(flight.start, flight.kind, flight.label, age_ms, ERROR)
            self.completed(flight.start, flight.kind, ERROR)

    def censor(self, flight: Flight, now: float | None = None) -> None:
        """Write a request still in flight, its latency its age: a lower bound."""
        now = time.time() if now is None else now
        self.row(flight.start, flight.kind, flight.label, (now - flight.start) * 1000, CENSORED)
        self.meta["cut_off"] = self.meta.get("cut_off", 0) + 1

    def in_flight(self, kind: str = "request") -> int:
        """Requests of `kind` in flight now."""
        return sum(1 for f in self.flights.values() if f.kind == kind and not f.done)

    def close(self) -> None:
        """Censor what is in flight or never sent, then write this process's rows and facts.

        A worker of a distributed run sends them to the master instead (`remote.send_rows`):
        its host may not share the master's disk. Only the first call does anything.
        """
        if self.closed:
            return
        self.closed = True
        now = time.time()
        for flight in list(self.flights.values()):
            if not flight.done:
                self.censor(flight, now)
        self.flights.clear()
        if STATE.open_loop is not None:
            # Arrivals due in the cell that no user ever took: waiting all along, never sent.
            for intended in STATE.open_loop.unsent(now):
                self.row(
                    intended, "request", STATE.open_loop.label, (now - intended) * 1000, CENSORED
                )
                self.meta["cut_off"] = self.meta.get("cut_off", 0) + 1
            self.meta["open_loop"] = STATE.open_loop.facts()
            # Only whether (and from when) it happened in the window counts: keep a few, not
            # every arrival of a long overload (thousands, which made cell.json 180 kB).
            lo, hi = self.meta.get("window_start") or 0.0, self.meta.get("window_end") or now
            in_window = [t for t in self.full_at if lo <= t < hi]
            self.meta["slots_full_at"] = in_window[:FULL_KEPT]
        self.meta["pid"] = self.pid
        self.meta["rows"] = len(self.rows)
        self.meta["last_completion"] = self.last_completion
        if STATE.send_rows is not None:
            STATE.send_rows(self)
            return
        if not STATE.raw_dir:
            return
        write_rows(Path(STATE.raw_dir), str(self.pid), self.csv_text(), self.meta)

    def csv_text(self) -> str:
        """The rows as requests.csv lines (no header)."""
        out = io.StringIO()
        csv.writer(out).writerows(row.csv() for row in self.rows)
        return out.getvalue()


def write_rows(folder: Path, name: str, rows: str, meta: dict[str, Any]) -> None:
    """One process's `requests.<name>.csv` and `meta.<name>.json` (merged by the orchestrator)."""
    (folder / f"requests.{name}.csv").write_text(rows, newline="")
    (folder / f"meta.{name}.json").write_text(json.dumps(meta))


class OpenLoop:
    """Rate mode's arrivals: a seeded schedule, walked by a dispatcher into a queue users take from.

    The schedule starts at the test's start and is closed at the window's end: no arrival at or
    after `closed_at` is made. Arrivals the dispatcher made but no user took are in `queue`.
    """

    def __init__(self, rate: float, arrivals: str, seed: int, start: float) -> None:
        if rate <= 0:
            raise ValueError(f"--rate must be > 0, got {rate}")
        self.rate = rate
        self.arrivals = arrivals
        self.seed = seed
        self.start = start
        self.random = random.Random(seed)
        self.next_at = start + self.gap()
        self.closed_at: float | None = None
        self.made = 0
        self.queue: gevent.queue.Queue[float] = gevent.queue.Queue()
        # The request label of the user classes in rate mode, for arrivals never sent.
        self.label = "request"

    def gap(self) -> float:
        """Seconds to the next arrival: exponential (Poisson arrivals) or fixed."""
        if self.arrivals == "constant":
            return 1.0 / self.rate
        return self.random.expovariate(self.rate)

    def due(self, until: float) -> float | None:
        """The next arrival if it is before `until` and the schedule is open; advances."""
        at = self.next_at
        if at >= until or (self.closed_at is not None and at >= self.closed_at):
            return None
        self.next_at += self.gap()
        self.made += 1
        return at

    def dispatch(self) -> None:
        """Put each arrival in the queue at its time (runs as a greenlet until closed).

        An arrival that finds no user waiting for one found every connection busy: it waits in
        the queue (`slots_full`). That happens when the server holds every connection, and also
        when a saturated load generator works through its own backlog; the summary tells the
        two apart by the load generator's CPU (loadtests/summary.py `behind`).
        """
        while self.closed_at is None or self.next_at < self.closed_at:
            gevent.sleep(max(0.0, self.next_at - time.time()))
            at = self.due(float("inf"))
            if at is None:
                return
            if STATE.recorder.idle <= 0:
                STATE.recorder.full_at.append(at)
            self.queue.put(at)

    def unsent(self, now: float) -> list[float]:
        """Intended starts of arrivals due by `now` (and before the close) that no user took."""
        waiting = []
        while not self.queue.empty():
            waiting.append(self.queue.get_nowait())
        while (at := self.due(now)) is not None:
            waiting.append(at)
        return waiting

    def facts(self) -> dict[str, Any]:
        """What meta.json records of the schedule."""
        return {
            "rate": self.rate,
            "arrivals": self.arrivals,
            "seed": self.seed,
            "start": self.start,
            "closed_at": self.closed_at,
            "made": self.made,
        }


@dataclass
class State:
    """This Locust process's lab state: where raw rows go, its recorder, rate mode's arrivals."""

    raw_dir: str = ""
    recorder: Recorder = field(default_factory=Recorder)
    open_loop: OpenLoop | None = None
    # A distributed run's worker sends its rows to the master (loadtests/locustfiles/remote.py).
    send_rows: Callable[[Recorder], None] | None = None


STATE = State()
# `--processes` forks workers after this module is imported: each must record its own rows.
os.register_at_fork(after_in_child=STATE.recorder.reset)


@events.init.add_listener
def _configure(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    STATE.raw_dir = opts.raw_dir
    from loadtests.locustfiles import remote

    remote.configure(environment)
    for user_class in environment.user_classes:
        # A queue of users x latency must be measured, not cut short by Locust's 60 s default.
        user_class.network_timeout = opts.request_timeout
        user_class.connection_timeout = opts.request_timeout
    if opts.wait_for_host and opts.host:
        # Blocks before the run starts, so the server's start-up is not counted as run time.
        url = f"{opts.host.rstrip('/')}{opts.ready_path}"
        if not wait_for_host(url, opts.wait_for_host):
            # No load on a server that never became ready: say so in the meta file, and stop.
            STATE.recorder.meta["not_ready"] = url
            STATE.recorder.close()
            print(f"{url} did not answer 200 within {opts.wait_for_host:g} s", flush=True)
            raise SystemExit(3)
    if opts.start_file and not wait_for_file(Path(opts.start_file), opts.wait_for_host or 30.0):
        # The orchestrator saw the server ready first: no load before it could tell.
        print(f"{opts.start_file} did not appear: the orchestrator gave up", flush=True)
        raise SystemExit(3)


def wait_for_file(path: Path, timeout: float) -> bool:
    """Wait until `path` exists (the orchestrator's go), or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        gevent.sleep(0.02)
    return False


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


def run_clock(runner: Any, opts: Any) -> None:
    """Warm-up, then the window: closes on the sample target or at --window-max; then quit.

    The warm-up lasts --warmup-seconds, and longer (up to --warmup-max) until every user has
    completed a request: before that, a closed loop is still filling (a user whose first request
    is still queued is not yet in the loop), and Little's law cannot hold.
    """
    began = STATE.recorder.meta["test_start"]
    gevent.sleep(max(0.0, began + opts.warmup_seconds - time.time()))
    # The master of several processes runs no users: it cannot see them answered, nor samples.
    local = (
        not isinstance(runner, WorkerRunner) and (opts.processes or 1) <= 1 and not opts.lab_workers
    )
    while (
        local
        and STATE.open_loop is None
        and len(STATE.recorder.users_done) < runner.user_count
        and time.time() < began + opts.warmup_max
    ):
        gevent.sleep(TICK_S)
    # Timed from the test's start, so a window without warm-up holds the very first requests.
    start = (
        max(began + opts.warmup_seconds, time.time())
        if opts.warmup_max
        else began + opts.warmup_seconds
    )
    closed = local and STATE.open_loop is None
    STATE.recorder.meta["users_in_loop"] = len(STATE.recorder.users_done) if closed else None
    STATE.recorder.window_start = STATE.recorder.meta["window_start"] = start
    gevent.sleep(max(0.0, start + opts.window_min - time.time()))
    longest = max(opts.window_max, opts.window_min)
    target = opts.sample_target if local else 0
    while time.time() - start < longest:
        if target and STATE.recorder.window_samples >= target:
            break
        gevent.sleep(TICK_S)
    STATE.recorder.meta["window_end"] = time.time()
    STATE.recorder.meta["window_samples"] = STATE.recorder.window_samples
    if STATE.open_loop is not None:
        # No arrival after the window; those queued are still sent (see `back_to_back`).
        STATE.open_loop.closed_at = STATE.recorder.meta["window_end"]
    if opts.lab_workers:
        from loadtests.locustfiles import remote

        remote.end_window(runner, opts, start, STATE.recorder.meta["window_end"])
    runner.quit()


def watch_drain(runner: Any, grace_s: float, stall_s: float) -> None:
    """After the window: kill the users still waiting at `grace_s`, or earlier on a stall."""
    began = time.time()
    while STATE.recorder.in_flight():
        now = time.time()
        since = now - (
            STATE.recorder.last_completion or STATE.recorder.meta.get("test_start", began)
        )
        if stall_s and since >= stall_s:
            STATE.recorder.meta["stalled"] = {
                "in_flight": STATE.recorder.in_flight(),
                "since_s": since,
            }
            break
        if now - began >= grace_s:
            break
        gevent.sleep(TICK_S)
    STATE.recorder.meta["drain_s"] = time.time() - began
    STATE.recorder.meta["in_flight_at_end"] = STATE.recorder.in_flight()
    if STATE.recorder.in_flight():
        # Each user's tracked() writes its request as censored when the kill reaches it.
        runner.user_greenlets.kill(block=False)


def py_spy() -> str | None:
    """The py-spy next to this Python (the lab's venv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def watch_for_stall(pid: int, after_s: float, stall_s: float, folder: Path) -> None:
    """Dump the server's threads after `after_s` without a completion, and just before `stall_s`.

    The first dump shows what the threads wait for early in a gap; the second, taken when the
    gap has become a stall, shows whether that wait turned into something no timeout ends (the
    threads of a self-deadlock wait for a lock, not for a pool with a timeout).
    """
    marks = [("threads.txt", after_s)]
    # A second before the drain gives up on a stall (it stops the run at `stall_s`).
    if stall_s - STALL_DUMP_LEAD_S > after_s:
        marks.append(("threads-stall.txt", stall_s - STALL_DUMP_LEAD_S))
    dumps: list[dict[str, Any]] = []
    while marks:
        gevent.sleep(TICK_S * 4)
        now = time.time()
        since = now - (STATE.recorder.last_completion or STATE.recorder.meta["test_start"])
        name, at = marks[0]
        if not STATE.recorder.in_flight() or since < at:
            continue
        dumps.append(dump_threads(pid, folder / name, now, since))
        STATE.recorder.meta["thread_dumps"] = dumps
        marks.pop(0)


def dump_threads(pid: int, out: Path, now: float, since: float) -> dict[str, Any]:
    """Run `py-spy dump` on `pid` into `out`; what was dumped when."""
    info: dict[str, Any] = {"at_s": now - STATE.recorder.meta["test_start"], "since_s": since}
    exe = py_spy()
    if exe is None:
        info["error"] = "py-spy not found"
        return info
    # gevent's subprocess: the users go on while py-spy reads the server.
    try:
        done = gevent.subprocess.run(
            [exe, "dump", "--subprocesses", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, gevent.subprocess.TimeoutExpired) as exc:
        info["error"] = f"py-spy failed: {exc!r}"
        return info
    out.write_text(done.stdout + done.stderr)
    info.update(file=out.name, code=done.returncode, in_flight=STATE.recorder.in_flight())
    return info


@events.test_start.add_listener
def _test_start(environment: Environment, **_: Any) -> None:
    STATE.recorder.meta["test_start"] = time.time()
    from loadtests.locustfiles import remote

    remote.announce(environment)
    opts = environment.parsed_options
    runner = environment.runner
    worker = isinstance(runner, WorkerRunner)
    if opts is not None and opts.rate and opts.lab_workers and worker:
        # Distributed: each worker walks its share of the rate on its own seeded schedule.
        share, seed = opts.rate / opts.lab_workers, opts.arrival_seed + 7919 * runner.worker_index
        STATE.open_loop = OpenLoop(share, opts.arrivals, seed, time.time())
        gevent.spawn(STATE.open_loop.dispatch)
    elif opts is not None and opts.rate and not worker and not opts.lab_workers:
        if (opts.processes or 1) > 1:
            raise SystemExit("--rate with several processes needs --lab-workers (the orchestrator)")
        STATE.open_loop = OpenLoop(opts.rate, opts.arrivals, opts.arrival_seed, time.time())
        gevent.spawn(STATE.open_loop.dispatch)
    if opts is not None and opts.dump_after and opts.server_pid and opts.raw_dir:
        if (opts.processes or 1) > 1:
            # The master runs no users and sees nothing in flight: say so rather than stay silent.
            STATE.recorder.meta["thread_dumps"] = [
                {"error": "not taken with several Locust processes"}
            ]
        elif not isinstance(runner, WorkerRunner):
            folder = Path(opts.raw_dir)
            args = (opts.server_pid, opts.dump_after, opts.stall_seconds, folder)
            gevent.spawn(watch_for_stall, *args)
    if opts is not None and (opts.window_min or opts.window_max):
        if not isinstance(runner, WorkerRunner):
            gevent.spawn(run_clock, runner, opts)
        else:
            STATE.recorder.window_start = STATE.recorder.meta["test_start"] + opts.warmup_seconds


@events.spawning_complete.add_listener
def _spawned(user_count: int, **_: Any) -> None:
    STATE.recorder.meta["spawned"] = max(user_count, STATE.recorder.meta.get("spawned", 0))
    STATE.recorder.meta["spawning_complete"] = time.time()


@events.test_stopping.add_listener
def _test_stopping(environment: Environment, **_: Any) -> None:
    # The window is over: what is in flight drains, bounded by the grace and the stall rule.
    STATE.recorder.meta.setdefault("test_stopping", time.time())
    opts = environment.parsed_options
    if opts is not None and environment.runner is not None:
        gevent.spawn(watch_drain, environment.runner, opts.grace_seconds, opts.stall_seconds)


@events.test_stop.add_listener
def _test_stop(environment: Environment, **_: Any) -> None:
    STATE.recorder.meta["test_stop"] = time.time()
    if STATE.send_rows is not None and isinstance(environment.runner, WorkerRunner):
        # Distributed: the drain is over on this worker; the master waits for its rows.
        STATE.recorder.close()


@events.quitting.add_listener
def _quitting(**_: Any) -> None:
    STATE.recorder.close()


def server_timing(value: str | list[str] | None) -> Timing:
    """(app, upstream, db) milliseconds of a `Server-Timing` header, as sent; empty if absent.

    Several headers (an app of the user's that sets its own, under the probe's) arrive as a list:
    they are one header's parts, as HTTP folds them; the first of each name counts.
    """
    if not value:
        return NO_TIMING
    if isinstance(value, list):
        value = ",".join(value)
    durations = {}
    for part in value.split(","):
        name, _, duration = part.strip().partition(";dur=")
        durations.setdefault(name, duration)
    return Timing(durations.get("app", ""), durations.get("upstream", ""), durations.get("db", ""))


def outcome_of(exception: BaseException | None) -> str:
    """`ok`, `timeout` (the load generator's own timeout fired) or `error`.

    geventhttpclient wraps a socket timeout in `RetriesExceeded(original=...)`: look inside.
    """
    if exception is None:
        return OK
    seen: BaseException | None = exception
    for _ in range(4):
        if seen is None:
            break
        # A status such as 504 is the server's answer (an error); these are the client's clock.
        if isinstance(seen, TimeoutError | gevent.Timeout) or "Timeout" in type(seen).__name__:
            return TIMEOUT
        seen = getattr(seen, "original", None) or seen.__cause__ or seen.__context__
    return ERROR


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
    outcome = outcome_of(exception)
    intended = STATE.recorder.intended.get(gevent.getcurrent())
    lag_ms = None
    if intended is not None and kind in ("request", "ttft"):
        # Rate mode: from the intended start, the wait to be sent included (coordinated omission).
        lag_ms = max(0.0, (ts - intended) * 1000)
        ts, response_time = intended, response_time + lag_ms
    STATE.recorder.row(ts, kind, label, response_time, outcome, timing, lag_ms)
    if kind in REQUEST_KINDS:
        STATE.recorder.completed(ts, kind, outcome)


def back_to_back(task: Callable[[Any], None]) -> Callable[[Any], None]:
    """Run a task in a closed loop without Locust's wait() between runs; in rate mode, on time.

    A user stopped while in wait() is killed at once, and with a zero wait the kill often lands
    after it woke, in the middle of its next request (seen: 50 of 200 users cut off). A user
    that never waits is only ever asked to stop, and finishes the request it is in.

    In rate mode (`--rate`) a user instead takes arrivals from the schedule's queue and sends each
    with its intended start; it keeps taking while arrivals are queued, so a backlog left when
    the window closes is still sent during the drain (and censored if the drain ends first).
    A user class with `open_loop = False` (the mixed scenario's paced probe) stays closed.
    """

    @functools.wraps(task)
    def run(user: Any) -> None:
        loop = STATE.open_loop
        if loop is None or not getattr(user, "open_loop", True):
            task(user)
            raise RescheduleTaskImmediately()
        me = gevent.getcurrent()
        STATE.recorder.idle += 1
        try:
            intended: float | None = loop.queue.get(timeout=TICK_S)
        except gevent.queue.Empty:
            raise RescheduleTaskImmediately() from None
        finally:
            STATE.recorder.idle -= 1
        while intended is not None:
            STATE.recorder.intended[me] = intended
            try:
                task(user)
            finally:
                STATE.recorder.intended.pop(me, None)
            intended = None if loop.queue.empty() else loop.queue.get_nowait()
        raise RescheduleTaskImmediately()

    return run


class tracked:  # lower case: reads like a function in `with tracked(...), ...`
    """Keep a request in flight until its outcome is written; censor it if its user is killed."""

    def __init__(self, label: str, kind: str = "request") -> None:
        self.label = label
        self.kind = kind

    def __enter__(self) -> None:
        STATE.recorder.begin(self.kind, self.label)

    def __exit__(
        self, _type: type[BaseException] | None, exc: BaseException | None, *_: object
    ) -> None:
        STATE.recorder.end(exc)


def fail(response: Any, text: str) -> None:
    """Mark `response` failed; a client-side timeout keeps its exception (outcome `timeout`)."""
    error = getattr(response, "error", None)
    response.failure(error if outcome_of(error) == TIMEOUT else text)


def expect(response: Any, status: int, valid: Callable[[Any], bool]) -> Any:
    """Mark `response` failed unless it has `status` and a JSON body `valid` accepts."""
    if response.status_code != status:
        text = (response.text or "")[:200] if response.status_code else str(response.error)
        fail(response, f"status {response.status_code}: {text}")
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
