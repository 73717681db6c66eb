"""Child processes: health polling, early exit, and no process left behind (tiny fake servers)."""

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtests.process import ServerError, _tree_cpu_s, free_port, spawn, wait_healthy


def test_healthy_server_then_killed(tmp_path: Path) -> None:
    (tmp_path / "health").write_text("ok")  # http.server answers 200 for this file
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with spawn(cmd + ["--directory", str(tmp_path)], tmp_path / "server.log") as proc:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health", timeout=10)
        pid = proc.pid
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_early_exit_is_reported(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "print('boom'); raise SystemExit(3)"]
    with (
        pytest.raises(ServerError, match="exited with code 3"),
        spawn(cmd, tmp_path / "server.log") as proc,
    ):
        wait_healthy(proc, f"http://127.0.0.1:{free_port()}/health", timeout=10)
    assert "boom" in (tmp_path / "server.log").read_text()


def test_health_timeout(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(ServerError, match="not healthy"), spawn(cmd, tmp_path / "log") as proc:
        wait_healthy(proc, f"http://127.0.0.1:{free_port()}/health", timeout=0.5)


def test_whole_group_is_killed(tmp_path: Path) -> None:
    # A parent that forks a grandchild, as Locust --processes does.
    cmd = ["sh", "-c", "sleep 60 & sleep 60"]
    with spawn(cmd, tmp_path / "log") as proc:
        deadline = time.monotonic() + 5
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    time.sleep(0.2)
    alive = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert len(family) >= 2 and alive == []


FORKS_A_BURNER = """
import os, time
pid = os.fork()
if pid == 0:
    start = time.process_time()
    while time.process_time() - start < 0.4:
        pass
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(30)
"""


def test_tree_cpu_keeps_the_time_of_children_that_exited() -> None:
    """A child that burns 0.4 s of CPU and exits: the tree's CPU must not fall when it does
    (PostgreSQL's backends come and go with connections)."""
    proc = subprocess.Popen([sys.executable, "-c", FORKS_A_BURNER])
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 10
        while not parent.children() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        during = _tree_cpu_s(parent)
        while parent.children() and time.monotonic() < deadline:
            time.sleep(0.02)
        after = _tree_cpu_s(parent)
        assert not parent.children()
        assert after >= during
        assert after >= 0.35
    finally:
        proc.kill()
        proc.wait()
