"""The method of issue 8 on real processes: every request accounted for, a stall named.

A stub server answers 20 requests, then holds every later one for 60 s. Locust runs against it
through the orchestrator's own `run_cell`; the test checks what the server saw against what the
run recorded.
"""

import json
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from contract import CENSORED, OK, OUTCOMES, TIMEOUT
from loadtests.context import RunContext
from loadtests.matrix import Cell, MatrixSpec
from loadtests.process import Pinning, free_port, spawn, wait_healthy
from loadtests.runner import run_cell
from loadtests.summary import load_requests, write_summary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
USERS = 5
FAST = 20
STALL_S = 3.0


@pytest.fixture
def stub(tmp_path: Path):
    """The stub server on a free port: yields its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "tests.stub_server:app", "--port", str(port)]
    cmd += ["--host", "127.0.0.1", "--log-level", "warning"]
    env = {"STUB_FAST": str(FAST), "STUB_HOLD_S": "60", "PYTHONPATH": str(REPO)}
    with spawn(cmd, tmp_path / "stub.log", env=env, cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, f"{url}/ready")
        yield url


def received(url: str) -> int:
    with urllib.request.urlopen(f"{url}/count", timeout=5) as response:
        return json.loads(response.read())["received"]


def stub_spec(**overrides: object) -> MatrixSpec:
    """One `hello` cell against the stub, no warm-up, a 3 s stall threshold."""
    # Server timeouts are set low so a 3 s stall threshold is legal (it must exceed them).
    return MatrixSpec(
        scenarios=["hello"],
        variants=["async"],
        users=[USERS],
        warmup_s=0,
        grace_s=STALL_S + 5,
        stall_s=STALL_S,
        server_env={"db_pool_timeout_s": 0.5, "http_timeout_s": 0.5},
        **overrides,  # type: ignore[arg-type]
    )


@pytest.mark.timeout(90)
def test_stall_accounts_for_every_request_and_is_named(tmp_path: Path, stub: str) -> None:
    spec = stub_spec(duration_s=1)
    ctx = RunContext(out=tmp_path / "run", pinning=Pinning(None, None), target=stub)
    doc = run_cell(Cell("hello", "async", "-", USERS, 1), spec, ctx).to_dict()
    assert doc["status"] == "ok", doc["reason"]

    rows = load_requests(tmp_path / "run" / doc["cell_id"] / "requests.csv")
    main = rows[rows["kind"] == "request"]
    # Every request the server received is a row, each with exactly one outcome.
    assert len(main) == received(stub)
    assert set(main["outcome"]) <= set(OUTCOMES)
    counts = main["outcome"].value_counts()
    assert counts.get(OK, 0) == FAST
    assert counts.get(CENSORED, 0) == USERS
    # Censored requests carry their age: from their start to the cell's end, at least the stall.
    held = main[main["outcome"] == CENSORED]
    ended = doc["locust"]["test_stop"]
    assert ((held["ts"] + held["latency_ms"] / 1000) - ended).abs().max() < 1.0
    assert (held["latency_ms"] >= STALL_S * 1000).all()

    # The cell is labelled stalled with its evidence, and it ended at the stall, not the grace.
    judged = doc["judged"]
    assert judged["stalled"] is True
    assert f"with {USERS} in flight" in judged["stall_evidence"]
    # The drain stopped at the stall (3 s without a completion), not at the 8 s grace.
    assert doc["locust"]["stalled"] and doc["locust"]["drain_s"] < spec.grace_s - 1
    row = pd.read_csv(write_summary(tmp_path / "run")).iloc[0]
    assert bool(row["stalled"]) and row["censored"] == USERS and row["ok"] == FAST
    # 25 samples support no p99 (the sample rule): the column is empty, and the exact value,
    # kept as `p99_ms_raw`, reaches the censored ones: a lower bound, by the contract.
    assert pd.isna(row["p99_ms"]) and row["latency_n"] == 25
    assert row["censored_min_ms"] <= row["p99_ms_raw"]


@pytest.mark.timeout(90)
def test_the_load_generators_own_timeout_is_its_own_outcome(tmp_path: Path, stub: str) -> None:
    # Locust gives up on a request after 1 s: the held requests end as `timeout`, not `error`,
    # and since they complete (as timeouts) the cell is not a stall.
    spec = stub_spec(duration_s=2.5, request_timeout_s=1.0)
    ctx = RunContext(out=tmp_path / "run", pinning=Pinning(None, None), target=stub)
    doc = run_cell(Cell("hello", "async", "-", USERS, 1), spec, ctx).to_dict()
    assert doc["status"] == "ok", doc["reason"]
    rows = load_requests(tmp_path / "run" / doc["cell_id"] / "requests.csv")
    main = rows[rows["kind"] == "request"]
    assert len(main) == received(stub)
    timeouts = main[main["outcome"] == TIMEOUT]
    # Each user: its first held request times out after 1 s, and so does the next one.
    assert len(timeouts) >= 2 * USERS
    assert timeouts["latency_ms"].between(900, 2000).all()
    assert doc["metrics"]["timeouts"] >= USERS and doc["judged"]["stalled"] is False
