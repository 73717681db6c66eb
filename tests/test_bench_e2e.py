"""`python -m loadtests` end to end: real uvicorn servers, real mock upstream, real Locust."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from analysis.load import load_run
from contract import SUMMARY_COLUMNS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
QUICK = str(REPO / "loadtests" / "matrices" / "quick.toml")
TINY = ["--matrix", QUICK, "--scenarios", "chat", "--users", "5", "--rate", "", "--warmup", "1"]
# A non-default token count, so a slip in the settings plumbing cannot pass as the default.
TINY += ["--duration", "2", "--window-max", "2", "--repeats", "1", "--threadpool-tokens", "7"]
CELL_FILES = {
    "cell.json",
    "requests.csv",
    "metrics.csv",
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "locust_exceptions.csv",
    "locust.html",
    "locust.log",
    "server.log",
}


def bench_env(tmp_path: Path) -> dict[str, str]:
    """The run's environment, marked by its own TMPDIR so its processes can be found."""
    marker = tmp_path / "tmpdir"
    marker.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(marker)}


def leftovers(env: dict[str, str]) -> list[str]:
    """Processes still running with the run's environment (every child inherits it)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get("TMPDIR") == env["TMPDIR"]:
                found.append(" ".join(proc.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def bench(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loadtests", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_summary(run: Path) -> list[dict[str, str]]:
    with open(run / "summary.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == list(SUMMARY_COLUMNS)
        return list(reader)


@pytest.mark.timeout(120)
def test_tiny_matrix(tmp_path: Path) -> None:
    run, env = tmp_path / "run", bench_env(tmp_path)
    proc = bench([*TINY, "--variants", "sync,async", "--out", str(run)], env)
    out, _ = proc.communicate(timeout=100)
    assert proc.returncode == 0, out
    assert leftovers(env) == []

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["git"]["commit"] and manifest["versions"]["locust"]
    assert manifest["machine"]["cpu_count"] and manifest["end"] >= manifest["start"]
    assert manifest["server_settings"]["threadpool_tokens"] == 7
    # Calibrated before the run and after its one pass.
    labels = [c["label"] for c in manifest["calibration"]]
    assert labels == ["before", "after pass 1"], manifest["calibration"]
    assert all(
        c["python_loop_per_s"] > 0 and c["asgi_hello_per_s"] > 0 for c in manifest["calibration"]
    )

    rows = read_summary(run)
    assert [r["cell_id"] for r in rows] == [
        "chat__sync-httpx__u005__r1",
        "chat__async-httpx__u005__r1",
    ]
    for row in rows:
        assert CELL_FILES <= {p.name for p in (run / row["cell_id"]).iterdir()}
        assert row["status"] == "ok", row["reason"]
        assert row["failures"] == "0" and row["cut_off"] == "0" and row["censored"] == "0"
        assert int(row["requests"]) == int(row["ok"]) > 0
        assert row["stalled"] == "False" and row["steady"] == "True", row["little_ratio"]
        assert row["threadpool_tokens"] == "7"
        # The mock upstream's own clock: what it served, against the 50 ms configured.
        assert 45 <= float(row["upstream_served_ms"]) <= 100
        # 5 users against a 50 ms upstream: at most 100 req/s, and surely more than 10.
        assert 10 < float(row["rps"]) <= 110
        # A 2 s window of 5 users holds too few samples for a p99 (the sample rule): its exact
        # value is in `p99_ms_raw`.
        assert row["p99_ms"] == "" and int(row["latency_n"]) < 1000
        assert 50 <= float(row["p50_ms"]) <= float(row["p99_ms_raw"]) <= float(row["max_ms"])
        assert float(row["upstream_latency_ms"]) == 50
        cell = json.loads((run / row["cell_id"] / "cell.json").read_text())
        assert cell["window_end"] - cell["window_start"] == pytest.approx(2.0, abs=0.1)
        assert cell["env"]["LAB_THREADPOOL_TOKENS"] == "7"
        # The server itself ran with 7 tokens: its /metrics said so.
        with open(run / row["cell_id"] / "metrics.csv") as f:
            totals = {
                r["value"]
                for r in csv.DictReader(f)
                if r["metric"] == "lab_threadpool_tokens_total"
            }
        assert totals == {"7.0"}
        assert cell["cpu"]["server_pct"] is not None
        # The server's own view: Server-Timing per request, /metrics gauges per cell.
        assert float(row["overhead_p50_ms"]) >= 0
        assert row["threadpool_peak_in_use"] != "" and row["server_rss_peak_mb"] != ""

    again = bench([*TINY, "--variants", "sync,async", "--out", str(run), "--resume"], env)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and "0 of 2 cells" in out, out


def running(env: dict[str, str]) -> list[list[str]]:
    """Command lines of the run's live processes."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if proc.environ().get("TMPDIR") == env["TMPDIR"]:
                found.append(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def cell_under_way(run: Path, cell_id: str, variant: str, env: dict[str, str]) -> bool:
    """The cell's own server and its own Locust both run (not the cells before it)."""
    commands = running(env)
    server = any(c[1:4] == ["-m", "servers", variant] for c in commands)
    locust = any("-m" in c and "locust" in c and str(run / cell_id) in c for c in commands)
    return server and locust and (run / cell_id / "server.log").exists()


@pytest.mark.timeout(300)
def test_interrupt_mid_cell_stops_every_child_keeps_finished_cells_and_resume_completes(
    tmp_path: Path,
) -> None:
    run, env = tmp_path / "run", bench_env(tmp_path)
    first, second = "chat__sync-httpx__u005__r1", "chat__async-httpx__u005__r1"
    proc = bench([*TINY, "--variants", "sync,async,blocking", "--out", str(run)], env)
    # Interrupt inside the second cell, never between cells: wait until the first is written and
    # the second cell's own server (`-m servers async`) and Locust (`--raw-dir <its folder>`) run.
    deadline = time.monotonic() + 120
    while not ((run / first / "cell.json").exists() and cell_under_way(run, second, "async", env)):
        if proc.poll() is not None or time.monotonic() > deadline:
            out, _ = proc.communicate()
            pytest.fail(f"the second cell never started:\n{out}")
        time.sleep(0.05)
    children = [c for c in running(env) if c[1:3] != ["-m", "loadtests"]]
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    stopped_s = time.monotonic() - signalled
    assert proc.returncode == 130, out
    # Every child (upstream, the cell's server and Locust) is gone, within a few seconds.
    assert len(children) >= 3, children
    assert leftovers(env) == []
    assert stopped_s < 10, f"took {stopped_s:.1f} s to stop"
    # The finished cell is kept; the interrupted one left no cell.json, so --resume reruns it.
    rows = read_summary(run)
    assert [r["cell_id"] for r in rows] == [first]
    assert not (run / second / "cell.json").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["end"] is not None and manifest["sessions"][-1]["interrupted"] is True
    gaps = load_run(run).completeness
    assert gaps.missing == (second, "chat__blocking-httpx__u005__r1")
    assert gaps.interrupted == (second,) and gaps.last_session_interrupted

    again = bench([*TINY, "--variants", "sync,async,blocking", "--out", str(run), "--resume"], env)
    out, _ = again.communicate(timeout=200)
    assert again.returncode == 0 and "2 of 3 cells" in out, out
    assert leftovers(env) == []
    rows = read_summary(run)
    assert [r["cell_id"] for r in rows] == [first, second, "chat__blocking-httpx__u005__r1"]
    assert all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    # The resumed run reads as any other: nothing missing, no special step.
    assert load_run(run).completeness.complete
    sessions = json.loads((run / "manifest.json").read_text())["sessions"]
    assert [s["interrupted"] for s in sessions] == [True, False]
