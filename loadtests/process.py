"""Child processes of a run: free ports, CPU pinning, servers with a health check, clean kills."""

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from contract import DEFAULT_SERVER


class ServerError(RuntimeError):
    """The server did not come up (early exit, health timeout)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the server under test and the load side (Locust + upstream) may use."""

    server: tuple[int, ...] | None
    load: tuple[int, ...] | None

    @classmethod
    def plan(cls, cpus: Sequence[int] | None = None) -> "Pinning":
        """Server on the last CPU, everything else on the rest; no pinning on one CPU."""
        cpus = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
        if len(cpus) < 2:
            return cls(None, None)
        return cls(server=(cpus[-1],), load=tuple(cpus[:-1]))

    @property
    def shared_load_core(self) -> bool:
        """Locust and the upstream compete for one core (the load side's CPU adds up)."""
        return self.load is None or len(self.load) == 1

    def to_dict(self) -> dict[str, Any]:
        """Plain data for manifest.json."""
        return {**asdict(self), "available": sorted(os.sched_getaffinity(0))}


def pin(pid: int, cpus: Sequence[int] | None) -> None:
    """Restrict a process (and the children it forks later) to `cpus`."""
    if cpus:
        os.sched_setaffinity(pid, cpus)


# A child gets this long after SIGTERM to finish what it is doing, open requests and streams
# included, before its whole process group is SIGKILLed. uvicorn alone would wait for an open
# stream without limit (`python -m servers` sets no `--timeout-graceful-shutdown`), so this is
# the bound on stopping a server (tests/test_loadtests_shutdown.py holds one with a stream open).
STOP_GRACE_S = 5.0
# Children started by `spawn` and not yet killed: what an interrupt stops at once.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class _Interrupts:
    """Ctrl-C / SIGTERM as `on_interrupt` handles them: held while a child starts."""

    holding: int = 0
    pending: bool = False
    received: int = 0


_INTERRUPTS = _Interrupts()


def kill_group(proc: subprocess.Popen[bytes], timeout: float = STOP_GRACE_S) -> None:
    """Stop a process started with start_new_session=True and everything it spawned.

    SIGTERM, up to `timeout` s for it to exit, then SIGKILL to the whole group, which always
    happens, even when an interrupt arrives during the wait.
    """
    try:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
    finally:
        # Children (Locust workers, a crashed server's helpers) may outlive their parent.
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        _LIVE.pop(proc.pid, None)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def signal_all(sig: signal.Signals) -> int:
    """Send `sig` to the process group of every child `spawn` started that is still live."""
    live = list(_LIVE.values())
    for proc in live:
        _signal_group(proc, sig)
    return len(live)


def on_interrupt(signum: int, frame: FrameType | None) -> None:
    """Signal handler for SIGINT and SIGTERM: every child stops, then KeyboardInterrupt.

    The first signal sends SIGTERM to every live child group at once (so their grace periods
    run together, not one after the other) and raises KeyboardInterrupt, unless a child is being
    started (`holding_interrupts`), which raises it as soon as the child is registered. A second
    signal SIGKILLs every live child group and lets the clean-up already under way finish.
    """
    _INTERRUPTS.received += 1
    if _INTERRUPTS.received > 1:
        signal_all(signal.SIGKILL)
        return
    signal_all(signal.SIGTERM)
    if _INTERRUPTS.holding:
        _INTERRUPTS.pending = True
        return
    raise KeyboardInterrupt


def reset_interrupts() -> None:
    """Forget earlier interrupts (a new run in the same process, or a test)."""
    _INTERRUPTS.holding, _INTERRUPTS.pending, _INTERRUPTS.received = 0, False, 0


@contextmanager
def holding_interrupts() -> Iterator[None]:
    """Hold an interrupt handled by `on_interrupt` until the block ends, then raise it."""
    _INTERRUPTS.holding += 1
    try:
        yield
    finally:
        _INTERRUPTS.holding -= 1
    if not _INTERRUPTS.holding and _INTERRUPTS.pending:
        _INTERRUPTS.pending = False
        raise KeyboardInterrupt


def log_tail(path: Path, lines: int = 10, max_bytes: int = 64_000) -> list[str]:
    """The last `lines` non-blank lines of a log file (none when it is missing or empty)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


@contextmanager
def spawn(
    cmd: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
    cwd: Path | None = None,
    **popen: Any,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `cmd` in its own process group, output to `log_path`; kill the group on exit.

    An interrupt while the child starts is held until it is registered, so it is always killed.
    `popen` goes to `subprocess.Popen` (e.g. `user=` and `preexec_fn=` for PostgreSQL).
    """
    proc: subprocess.Popen[bytes] | None = None
    try:
        with holding_interrupts(), open(log_path, "ab") as log:
            proc = subprocess.Popen(
                list(cmd),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                **popen,
            )
            _LIVE[proc.pid] = proc
        pin(proc.pid, cpus)
        yield proc
    finally:
        if proc is not None:
            kill_group(proc)


def wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200; raise ServerError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (code := proc.poll()) is not None:
            raise ServerError(f"exited with code {code} before becoming healthy")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise ServerError(f"not healthy after {timeout:g} s")


def server_command(
    app: str,
    port: int | str,
    python: str,
    server: str = DEFAULT_SERVER,
    host: str = "127.0.0.1",
) -> list[str]:
    """The command line of one lab app under one ASGI server (contract.SERVERS) on `host`:`port`
    (either may be a placeholder, loadtests.plan's `{bind}` and `{port}`); the default server's
    is the command every run before the server dimension used, without `--server`."""
    chosen = [] if server == DEFAULT_SERVER else ["--server", server]
    return [python, "-m", "servers", app, *chosen, "--host", host, "--port", str(port)]


@contextmanager
def run_server(
    app: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
    python: str = "python",
    cwd: Path | None = None,
    timeout: float = 30.0,
    server: str = DEFAULT_SERVER,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start `python -m servers <app>` under `server` on a free port, wait for /health, yield
    (process, url)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with spawn(server_command(app, port, python, server), log_path, env, cpus, cwd) as proc:
        wait_healthy(proc, f"{url}/health", timeout)
        yield proc, url


def _tree_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of a process, its live children and the children they have reaped.

    The reaped children's time (`children_user`, `children_system`) keeps the total from
    falling when a child exits: PostgreSQL forks a backend per connection and SQLAlchemy's
    overflow connections are closed after use, so a sum over live processes alone went
    negative over a window.
    """
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def mean_pct(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """Mean CPU between two epoch times from (epoch s, CPU s) samples, % of one core (None if
    fewer than two samples fall inside)."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
        return None
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return 100.0 * (c1 - c0) / (t1 - t0)


def peak_pct(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """Highest CPU over one sampling interval inside the window, % of one core."""
    inside = [s for s in samples if start <= s[0] <= end]
    rates = [
        100.0 * (c1 - c0) / (t1 - t0)
        for (t0, c0), (t1, c1) in zip(inside, inside[1:], strict=False)
        if t1 > t0
    ]
    return max(rates, default=None)


@dataclass
class CpuSampler:
    """Samples the CPU seconds of named processes (with their children) in a thread."""

    interval: float = 0.25
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _procs: dict[str, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, name: str, pid: int) -> None:
        """Start sampling process `pid` (and its children) as `name`."""
        self._procs[name] = psutil.Process(pid)
        self.samples[name] = []
        self._sample_one(name)

    def _sample_one(self, name: str) -> None:
        try:
            self.samples[name].append((time.time(), _tree_cpu_s(self._procs[name])))
        except psutil.NoSuchProcess:
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name in list(self._procs):
                self._sample_one(name)

    def __enter__(self) -> "CpuSampler":
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def percent(self, name: str, start: float, end: float) -> float | None:
        """Mean CPU of `name` between two epoch times, in % of one core (None if unknown)."""
        return mean_pct(self.samples.get(name, []), start, end)

    def peak(self, name: str, start: float, end: float) -> float | None:
        """Highest CPU of `name` over one sampling interval inside the window."""
        return peak_pct(self.samples.get(name, []), start, end)
