"""Locust's `--processes` (forked workers on this machine) through the lab: the workers' rows
reach the master like remote ones (loadtests/locustfiles/remote.py), every request the stub got
is a row, and a rate is split between the workers' own schedules."""

import sys
from pathlib import Path

import pytest

from loadtests.context import RunContext
from loadtests.matrix import Cell, MatrixSpec
from loadtests.process import Pinning, free_port, spawn, wait_healthy
from loadtests.runner import run_cell
from loadtests.summary import load_requests
from tests.test_method import received

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_forked_workers_send_every_row_and_split_the_rate(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "tests.stub_server:app", "--port", str(port)]
    cmd += ["--host", "127.0.0.1", "--log-level", "warning"]
    env = {"STUB_FAST": "100000000", "PYTHONPATH": str(REPO)}
    with spawn(cmd, tmp_path / "stub.log", env=env, cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, f"{url}/ready")
        ctx = RunContext(
            out=tmp_path / "run", pinning=Pinning(None, None), target=url, locust_processes=2
        )
        spec = MatrixSpec(
            scenarios=["hello"], variants=["async"], users=[], rates=[100], rate_slots=20,
            warmup_s=0.5, duration_s=2, grace_s=4, stall_s=3, dump_after_s=0,
            server_env={"db_pool_timeout_s": 0.5, "http_timeout_s": 0.5},
        )  # fmt: skip
        doc = run_cell(Cell("hello", "async", "-", 20, 1, rate=100), spec, ctx).to_dict()
        got = received(url)
    assert doc["status"] == "ok", doc["reason"]
    rows = load_requests(ctx.out / doc["cell_id"] / "requests.csv")
    assert (rows["kind"] == "request").sum() == got
    loops = [w["open_loop"] for w in doc["locust"]["workers"]]
    assert sorted(loop["rate"] for loop in loops) == [50.0, 50.0]
