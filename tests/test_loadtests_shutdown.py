"""Stopping children: a server with a stream open stops within the grace period (STOP_GRACE_S),
and an interrupt stops every child at once, even one being started."""

import http.client
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import pytest

from loadtests.process import (
    STOP_GRACE_S,
    free_port,
    holding_interrupts,
    kill_group,
    on_interrupt,
    reset_interrupts,
    spawn,
    wait_healthy,
)

REPO = Path(__file__).resolve().parent.parent
# Short in the tests; the orchestrator's own is STOP_GRACE_S.
GRACE_S = 1.5
# How much later than its grace a child may be gone: the SIGKILL, the wait, a busy machine.
SLACK_S = 1.5


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def stream_server(port: int) -> list[str]:
    """tests/stream_stub.py under uvicorn, as the lab serves its apps (info log: its shutdown)."""
    return [
        sys.executable, "-m", "uvicorn", "tests.stream_stub:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--log-level", "info",
    ]  # fmt: skip


@contextmanager
def open_stream(port: int) -> Iterator[http.client.HTTPResponse]:
    """A client reading `/stream`: its first event has arrived when this yields."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/stream")
        response = conn.getresponse()
        assert response.status == 200 and response.readline().startswith(b"data: 1")
        yield response
    finally:
        conn.close()


def test_kill_group_waits_at_most_the_stop_grace_by_default() -> None:
    assert inspect.signature(kill_group).parameters["timeout"].default == STOP_GRACE_S
    assert 0 < STOP_GRACE_S <= 10


@pytest.mark.timeout(30)
def test_a_server_with_an_open_stream_stops_within_the_grace(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "server.log"
    with spawn(stream_server(port), log, cwd=REPO) as proc:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health", timeout=15)
        with open_stream(port):
            started = time.monotonic()
            kill_group(proc, GRACE_S)
            took = time.monotonic() - started
    # uvicorn itself waited for the stream (it does not stop on SIGTERM alone) ...
    assert "Waiting for connections to close" in log.read_text()
    assert took >= GRACE_S - 0.1
    # ... and the grace bounded the wait: SIGKILL ended it.
    assert took <= GRACE_S + SLACK_S
    assert gone(proc.pid) and proc.returncode == -signal.SIGKILL


@pytest.mark.timeout(30)
def test_a_server_without_open_streams_stops_well_before_the_grace(tmp_path: Path) -> None:
    port = free_port()
    with spawn(stream_server(port), tmp_path / "server.log", cwd=REPO) as proc:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health", timeout=15)
        started = time.monotonic()
        kill_group(proc, GRACE_S * 4)
        took = time.monotonic() - started
    # uvicorn stops by itself (it may re-raise the SIGTERM it handled): no SIGKILL needed.
    assert took < GRACE_S and proc.returncode != -signal.SIGKILL


@pytest.fixture
def interrupts() -> Iterator[None]:
    """on_interrupt handles SIGTERM in this test, as in `python -m loadtests`."""
    reset_interrupts()
    previous = signal.signal(signal.SIGTERM, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        reset_interrupts()


SLOW_TO_STOP = """
import signal, sys, time
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(time.monotonic()))
print("ready", flush=True)
while not stopping:
    time.sleep(0.02)
time.sleep(float(sys.argv[1]))  # a second SIGTERM does not shorten it
"""


def slow_to_stop(seconds: float) -> list[str]:
    """A child that takes `seconds` to exit after SIGTERM (a server finishing its requests)."""
    return [sys.executable, "-c", SLOW_TO_STOP, str(seconds)]


def started(log: Path, text: str = "ready", timeout: float = 10.0) -> None:
    """Wait until a child has written `text` to its log (its signal handling is set up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.02)
    pytest.fail(f"{log} never said {text!r}")


@pytest.mark.timeout(30)
def test_an_interrupt_stops_every_child_at_once(tmp_path: Path, interrupts: None) -> None:
    # Two children that each need 2 s after SIGTERM: one after the other they would take 4 s.
    pids = []
    began = 0.0
    with pytest.raises(KeyboardInterrupt), ExitStack() as stack:
        for i in range(2):
            proc = stack.enter_context(spawn(slow_to_stop(2), tmp_path / f"{i}.log"))
            started(tmp_path / f"{i}.log")
            pids.append(proc.pid)
        began = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the interrupt arrives here
    took = time.monotonic() - began
    assert all(gone(pid) for pid in pids)
    assert 1.9 <= took <= 2 + SLACK_S


@pytest.mark.timeout(30)
def test_a_second_interrupt_kills_at_once(tmp_path: Path, interrupts: None) -> None:
    # A child that ignores SIGTERM would take the whole grace; a second signal ends it now.
    cmd = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"]
    began = 0.0
    with pytest.raises(KeyboardInterrupt), spawn(cmd, tmp_path / "log") as proc:
        started(tmp_path / "log")
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        began = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    took = time.monotonic() - began
    assert gone(proc.pid) and took < STOP_GRACE_S - 1


def test_an_interrupt_while_a_child_starts_waits_until_it_is_registered(
    interrupts: None,
) -> None:
    reached_the_end = False
    with pytest.raises(KeyboardInterrupt), holding_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler has run: the interrupt is held, not raised
        reached_the_end = True
    assert reached_the_end


def test_spawn_kills_a_child_whose_start_was_interrupted(tmp_path: Path, interrupts: None) -> None:
    # The interrupt arrives while the child starts: it is raised once the child is registered,
    # inside spawn's clean-up, so the child is killed, never orphaned.
    seen: list[int] = []
    real_popen = subprocess.Popen

    def popen_then_signal(*args: object, **kwargs: object) -> object:
        proc = real_popen(*args, **kwargs)
        seen.append(proc.pid)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        return proc

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("loadtests.process.subprocess.Popen", popen_then_signal)
        with pytest.raises(KeyboardInterrupt), spawn(["sleep", "60"], tmp_path / "log"):
            pytest.fail("the body must not run after an interrupt at start")
    assert len(seen) == 1 and gone(seen[0])
