"""loadtests.calibrate: two finite, positive figures, and no child process left behind."""

import math
import subprocess
import time

import psutil
import pytest

from loadtests import calibrate as cal
from loadtests.process import Pinning


def live_children() -> list[psutil.Process]:
    """This test process's descendants that still run (not zombies)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def uvicorn_children() -> list[psutil.Process]:
    found = []
    for child in live_children():
        try:
            if "uvicorn" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture
def servers_seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Pids of the uvicorn servers calibrate started (it waits for each to answer)."""
    seen: list[int] = []
    real = cal.wait_healthy

    def spy(proc: subprocess.Popen[bytes], url: str, timeout: float = 30.0) -> None:
        seen.append(proc.pid)
        real(proc, url, timeout)

    monkeypatch.setattr(cal, "wait_healthy", spy)
    return seen


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_content_length_parses_a_200_head() -> None:
    head = b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\nContent-Length: 5\r\ncontent-type: text/plain"
    assert cal.content_length(head) == 5
    with pytest.raises(ValueError, match="unexpected"):
        cal.content_length(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0")
    with pytest.raises(ValueError, match="content-length"):
        cal.content_length(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked")


def test_loop_rate_is_positive() -> None:
    assert cal.loop_rate(0.03) > 0


@pytest.mark.integration
def test_calibrate_gives_finite_positive_figures_and_leaves_no_child(
    servers_seen: list[int],
) -> None:
    before = {p.pid for p in live_children()}
    start = time.time()
    result = cal.calibrate(Pinning.plan(), seconds=0.5)
    took = time.time() - start
    assert set(result) == {"python_loop_per_s", "asgi_hello_per_s", "ts"}
    for key in ("python_loop_per_s", "asgi_hello_per_s"):
        assert math.isfinite(result[key]) and result[key] > 0, result
    assert start <= result["ts"] <= start + took
    assert took < 4, took
    assert len(servers_seen) == 1 and gone(servers_seen[0])
    assert uvicorn_children() == []
    assert {p.pid for p in live_children()} - before == set()


@pytest.mark.integration
def test_calibrate_kills_the_server_when_the_client_fails(
    servers_seen: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cal._child_command

    def failing_client(python: str, call: str) -> list[str]:
        if call.startswith("drive("):
            return [python, "-c", "print('client broke'); raise SystemExit(3)"]
        return real(python, call)

    monkeypatch.setattr(cal, "_child_command", failing_client)
    with pytest.raises(cal.CalibrationError, match="code 3(.|\n)*client broke"):
        cal.calibrate(Pinning.plan(), seconds=0.1)
    assert len(servers_seen) == 1 and gone(servers_seen[0])
    assert uvicorn_children() == []
