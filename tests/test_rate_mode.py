"""Rate mode (issue 10) on real processes: intended start times, a load side falling behind, and
the SLO capacity search against a server whose service rate is known.

Each test runs Locust through the orchestrator's own `run_cell` / `run_matrix` against
`tests/stub_server.py` (a stall of known length, or one request at a time at a known speed).
"""

import csv
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from rich.console import Console

from contract import LOADGEN_BEHIND
from loadtests.context import RunContext
from loadtests.matrix import Cell, MatrixSpec
from loadtests.process import Pinning, free_port, spawn, wait_healthy
from loadtests.runner import run_cell, run_matrix
from loadtests.scenarios import Scenario
from loadtests.summary import load_requests

# Timing is what these tests assert: `make test` runs them alone, after the parallel part.
pytestmark = [pytest.mark.integration, pytest.mark.timing]

REPO = Path(__file__).resolve().parent.parent
STALL_S = 2.0
FAST = 50
RATE = 50


@contextmanager
def start_stub(tmp_path: Path, **env: str) -> Iterator[str]:
    """The stub server with `env` on a free port: yields its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "tests.stub_server:app", "--port", str(port)]
    cmd += ["--host", "127.0.0.1", "--log-level", "warning"]
    with spawn(cmd, tmp_path / "stub.log", env={"PYTHONPATH": str(REPO), **env}, cwd=REPO) as p:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(p, f"{url}/ready")
        yield url


@pytest.fixture
def stalling(tmp_path: Path) -> Iterator[str]:
    """Answers at once, except that from request FAST + 1 on, everything waits out a 2 s stall."""
    with start_stub(tmp_path, STUB_FAST=str(FAST), STUB_STALL_S=str(STALL_S)) as url:
        yield url


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start a stub with the given environment; every one started is stopped after the test."""
    with ExitStack() as stack:
        yield lambda **env: stack.enter_context(start_stub(tmp_path, **env))


def spec(**overrides: object) -> MatrixSpec:
    """`hello` against a stub: rate cells only, short windows, low server timeouts."""
    values: dict[str, object] = {
        "scenarios": ["hello"],
        "variants": ["sync"],
        "users": [],
        "warmup_s": 0,
        "duration_s": 5,
        "grace_s": 8,
        "stall_s": 6,
        "dump_after_s": 0,
        "arrivals": "constant",
        "server_env": {"db_pool_timeout_s": 0.5, "http_timeout_s": 0.5},
    }
    return MatrixSpec(**{**values, **overrides})  # type: ignore[arg-type]


def context(tmp_path: Path, target: str) -> RunContext:
    return RunContext(out=tmp_path / "run", pinning=Pinning(None, None), target=target)


def latencies(ctx: RunContext, doc: dict) -> list[float]:
    rows = load_requests(ctx.out / doc["cell_id"] / "requests.csv")
    return rows.loc[rows["kind"] == "request", "latency_ms"].tolist()


@pytest.mark.timeout(120)
def test_rate_mode_counts_the_wait_a_closed_loop_hides(tmp_path: Path, stalling: str) -> None:
    # 5 connections at 50 req/s: the stall holds them all, and the arrivals meanwhile queue.
    ctx = context(tmp_path, stalling)
    doc = run_cell(
        Cell("hello", "sync", "-", 5, 1, rate=RATE), spec(rate_slots=5, rates=[RATE]), ctx
    ).to_dict()
    assert doc["status"] == "ok", doc["reason"]
    assert doc["valid"], doc["invalid_reason"]
    assert doc["metrics"]["slots_full"] is True
    waited = latencies(ctx, doc)
    # About 2 s x 50 req/s = 100 arrivals fall in the stall; each waits for its end, so their
    # latencies run from ~2 s (offered as it began) down to ~0: half of them over 1 s.
    assert 1800 <= max(waited) <= 2600
    assert 35 <= sum(ms > 1000 for ms in waited) <= 65
    assert 80 <= sum(ms > 100 for ms in waited) <= 120
    # About 100 samples: the exact p99 (the summary prints none below 1,000, the sample rule).
    assert doc["metrics"]["p99_ms"] is None
    assert doc["metrics"]["p99_ms_raw"] > 1800


@pytest.mark.timeout(120)
def test_a_closed_loop_reports_the_same_stall_as_a_few_slow_requests(
    tmp_path: Path, stalling: str
) -> None:
    # The contrast the rate mode exists for: 5 closed-loop users see the stall 5 times.
    ctx = context(tmp_path, stalling)
    doc = run_cell(Cell("hello", "sync", "-", 5, 1), spec(users=[5]), ctx).to_dict()
    assert doc["status"] == "ok", doc["reason"]
    waited = latencies(ctx, doc)
    assert sum(ms > 1000 for ms in waited) <= 5
    assert len(waited) > 500  # the fast answers around it drown the slow ones out of the p99
    assert doc["metrics"]["p99_ms_raw"] < 1000


@pytest.mark.timeout(120)
def test_a_load_generator_falling_behind_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stub: Callable[..., str]
) -> None:
    # Users that burn 2 ms of CPU before each request cannot send 2,000 a second; the server
    # answers at once, so the shortfall is the load side's. Its users are all busy too (working
    # through the backlog): what tells it from a server's queue is the load generator's core.
    burn = Scenario("hello", str(REPO / "tests" / "data" / "burn_locustfile.py"), ("BurnUser",))
    url = stub(STUB_FAST="100000000")
    ctx = context(tmp_path, url)
    ctx.scenarios["hello"] = burn
    doc = run_cell(
        Cell("hello", "sync", "-", 200, 1, rate=2000),
        spec(duration_s=2, rate_slots=200, arrivals="poisson", rates=[2000]),
        ctx,
    ).to_dict()
    assert doc["status"] == "ok", doc["reason"]
    assert not doc["valid"]
    assert doc["invalid_reason"].startswith(LOADGEN_BEHIND)
    metrics = doc["metrics"]
    assert metrics["sent"] < 0.95 * metrics["scheduled"]
    assert "load generator at" in doc["invalid_reason"]


@pytest.mark.timeout(240)
def test_capacity_search_finds_a_known_service_rate(
    tmp_path: Path, stub: Callable[..., str]
) -> None:
    # One request at a time, 10 ms each: the server serves at most 100 req/s. Constant arrivals
    # below that wait for nothing; above it a queue grows by the excess every second, and in a
    # 3 s window passes 100 ms. The search must bracket it: capacity within 80-105 req/s.
    url = stub(STUB_SERVICE_MS="10")
    ctx = context(tmp_path, url)
    matrix = spec(
        rates=[25, 50, 100, 200],
        slo="p99=100ms,errors=1%",
        duration_s=3,
        warmup_s=0.5,
        rate_slots=50,
        bisect_steps=3,
    )
    run_matrix(matrix, ctx, console=Console(quiet=True))
    with open(ctx.out / "capacity.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["bound"] == "bracketed"
    capacity, limit = float(row["capacity_rps"]), float(row["limit_rps"])
    assert 80 <= capacity <= 105, row
    assert capacity < limit <= capacity * 1.15, row
    # Every cell the search ran is in summary.csv, judged by the same rows.
    assert int(row["cells"]) == len(row["cell_ids"].split()) >= 5
    with open(ctx.out / "summary.csv", newline="") as f:
        ids = {r["cell_id"] for r in csv.DictReader(f)}
    assert set(row["cell_ids"].split()) <= ids
