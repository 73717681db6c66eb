"""Harness faults: a server that crashes mid-cell, exits at start or never becomes ready fails
its cell with the reason and the server's last log lines, the matrix goes on, and no process is
left behind (tests/fault_stubs.py stands in for the servers and for Locust)."""

import csv
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from rich.console import Console

from loadtests import session
from loadtests.context import RunContext
from loadtests.files import write_atomic
from loadtests.matrix import MatrixSpec
from loadtests.measure import SERVER_LOG_LINES
from loadtests.process import Pinning, log_tail
from loadtests.runner import run_matrix
from tests.fault_stubs import LAST_LINES

REPO = Path(__file__).resolve().parent.parent
MARK = "LAB_FAULT_TEST_RUN"


def fake_python(tmp_path: Path) -> str:
    """An interpreter that runs tests/fault_stubs.py for `-m servers <app>` and `-m locust`."""
    stub = REPO / "tests" / "fault_stubs.py"
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        'case "$2" in\n'
        f'  servers) [ "$3" = settings ] || exec "{sys.executable}" "{stub}" "$@" ;;\n'
        f'  locust) exec "{sys.executable}" "{stub}" "$@" ;;\n'
        "esac\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def marked(value: str) -> list[str]:
    """Live processes started with this test's mark in their environment."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARK) == value:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(" ".join(proc.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


@dataclass(frozen=True)
class FaultyRun:
    """One matrix over the three faulty servers."""

    docs: list[dict[str, Any]]
    console: str
    out: Path
    mark: str
    # Processes with the run's mark still alive just after run_matrix returned.
    left: list[str]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> FaultyRun:
    tmp_path = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MARK, str(tmp_path))
        # The machine's speed is not what this test is about: a fixed calibration.
        mp.setattr(
            session,
            "calibrate",
            lambda pinning, python: {"ts": time.time(), "python_loop_per_s": 1.0},
        )
        out = tmp_path / "run"
        ctx = RunContext(
            out=out,
            pinning=Pinning(None, None),
            python=fake_python(tmp_path),
            scratch=tmp_path,
            ready_timeout_s=1.5,
        )
        spec = MatrixSpec(
            scenarios=["hello"], variants=["sync", "async", "blocking"], users=[1], repeats=1
        )
        console = io.StringIO()
        shown = Console(file=console, width=400, highlight=False)
        docs = [r.to_dict() for r in run_matrix(spec, ctx, console=shown)]
    deadline = time.monotonic() + 2
    while (left := marked(str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return FaultyRun(docs, console.getvalue(), out, str(tmp_path), left)


@pytest.mark.timeout(60)
def test_each_server_fault_fails_its_cell_with_the_server_log_and_the_matrix_goes_on(
    faulty: FaultyRun,
) -> None:
    docs, console, out = faulty.docs, faulty.console, faulty.out
    assert [d["variant"] for d in docs] == ["sync", "async", "blocking"]
    assert [d["status"] for d in docs] == ["failed"] * 3
    crash, exit_, silent = docs
    assert crash["reason"].startswith("server exited with code 3 during the run")
    assert exit_["reason"].startswith("server never became ready: exited with code 1")
    assert silent["reason"].startswith("server never became ready: not healthy after 1.5 s")
    for doc in docs:
        last = LAST_LINES[doc["variant"]]
        # The reason quotes the log's last line; cell.json keeps the tail, as written.
        assert doc["reason"].endswith(f"; server.log ends: {last}")
        saved = json.loads((out / doc["cell_id"] / "cell.json").read_text())
        assert saved["server_log_tail"] == doc["server_log_tail"]
        assert 1 <= len(saved["server_log_tail"]) <= SERVER_LOG_LINES
        assert saved["server_log_tail"][-1] == last
        # Each console line shows the reason and every line of the tail, markup left as text.
        assert f"{doc['cell_id']}" in console
        for line in saved["server_log_tail"]:
            assert f"server.log | {line}" in console
    assert crash["server_log_tail"] == log_tail(out / crash["cell_id"] / "server.log")
    assert crash["server_log_tail"][0] == "INFO: request 6 done"  # the last 10 lines only
    assert "[bold]not markup[/]" in console
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert [r["reason"] for r in rows] == [d["reason"] for d in docs]


@pytest.mark.timeout(60)
def test_no_process_outlives_a_faulty_matrix(faulty: FaultyRun) -> None:
    # The crashed server left a helper (`sleep 300`) in its process group: it was killed too.
    assert faulty.left == []
    manifest = json.loads((faulty.out / "manifest.json").read_text())
    assert manifest["sessions"][-1]["cells_failed"] == 3
    assert manifest["sessions"][-1]["interrupted"] is False


def test_log_tail_of_a_missing_or_binary_log(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "none.log") == []
    (tmp_path / "server.log").write_bytes(b"\n".join([b"a", b"", b"\xff\xfe b", b"  "]) + b"\n")
    assert log_tail(tmp_path / "server.log") == ["a", "\ufffd\ufffd b"]
    lines = [f"line {i}" for i in range(50)]
    (tmp_path / "long.log").write_text("\n".join(lines))
    assert log_tail(tmp_path / "long.log", 3) == lines[-3:]


def test_a_rewritten_file_is_never_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "summary.csv"
    write_atomic(path, "a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n" and [p.name for p in tmp_path.iterdir()] == [path.name]

    def killed(src: object, dst: object) -> None:
        raise KeyboardInterrupt  # the writer stops before the new file is in place

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "a,b\n1,2\n3,")
    assert path.read_text() == "a,b\n1,2\n" and [p.name for p in tmp_path.iterdir()] == [path.name]
