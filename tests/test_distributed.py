"""Load from several hosts, on one machine: network namespaces this test makes itself
(loadtests/netns.py: a bridge on a private /24, torn down after), the server in one, a Locust
worker in each of two others, the master here. Every request any worker started is one row with
one outcome; the offered rate is split between the workers' schedules; a worker host that dies
mid-cell fails the cell, naming it.

It needs the right to make namespaces (root or CAP_NET_ADMIN, which this machine gives);
without it (an unprivileged container, say) the module is skipped with the reason
`loadtests.netns.available` gives, and `make test` says so in its summary of skips.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract import CENSORED, OK, OUTCOMES
from loadtests.context import RunContext
from loadtests.distributed import LoadHosts
from loadtests.matrix import Cell, MatrixSpec
from loadtests.netns import Network, available, lab_network
from loadtests.process import Pinning, spawn, wait_healthy
from loadtests.runner import run_cell
from loadtests.summary import load_requests

REPO = Path(__file__).resolve().parent.parent
WHY = available()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(bool(WHY), reason=WHY or "")]
FAST = 300


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    with lab_network(["srv", "w1", "w2"]) as net:
        yield net


def stub_in(net: Network, tmp: Path, **env: str):  # type: ignore[no-untyped-def]
    """tests/stub_server.py inside the `srv` namespace, on its own address."""
    address = net.hosts["srv"]
    cmd = [*net.run("srv"), sys.executable, "-m", "uvicorn", "tests.stub_server:app"]
    cmd += ["--host", address, "--port", "8000", "--log-level", "warning"]
    return spawn(cmd, tmp / "stub.log", env={"PYTHONPATH": str(REPO), **env}, cwd=REPO)


def context(net: Network, tmp: Path) -> RunContext:
    hosts = LoadHosts((net.namespace("w1"), net.namespace("w2")), net.exec_prefix(), 1, net.gateway)
    target = f"http://{net.hosts['srv']}:8000"
    return RunContext(out=tmp / "run", pinning=Pinning(None, None), target=target, load_hosts=hosts)


def spec(**overrides: object) -> MatrixSpec:
    values: dict[str, object] = {
        "scenarios": ["hello"],
        "variants": ["async"],
        "users": [20],
        "warmup_s": 0.5,
        "duration_s": 2,
        "grace_s": 4,
        "stall_s": 3,
        "dump_after_s": 0,
        "server_env": {"db_pool_timeout_s": 0.5, "http_timeout_s": 0.5},
    }
    return MatrixSpec(**{**values, **overrides})  # type: ignore[arg-type]


def count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/count", timeout=5) as response:
        return json.loads(response.read())["received"]


@pytest.mark.timeout(120)
def test_every_request_of_every_worker_is_one_row(network: Network, tmp_path: Path) -> None:
    # The stub answers FAST requests, then holds every later one: the cell ends with requests in
    # flight on both workers, which must come back as censored rows, none lost.
    ctx = context(network, tmp_path)
    with stub_in(network, tmp_path, STUB_FAST=str(FAST), STUB_HOLD_S="60") as proc:
        wait_healthy(proc, f"{ctx.target}/ready")
        doc = run_cell(Cell("hello", "async", "-", 20, 1), spec(), ctx).to_dict()
        sent = count(ctx.target)
    assert doc["status"] == "ok", doc["reason"]
    workers = doc["judged"]["load_hosts"]
    assert {w["host"] for w in workers} == {network.namespace("w1"), network.namespace("w2")}
    assert all(w["rows"] > 0 for w in workers) and doc["locust"]["lost_workers"] == []
    # Namespaces share this machine's kernel: their hosts' busy share includes the server's, so
    # it does not count against the load side (loadtests.distributed.saturated).
    assert all(w["host_is_here"] for w in workers), workers
    rows = load_requests(ctx.out / doc["cell_id"] / "requests.csv")
    main = rows[rows["kind"] == "request"]
    # Every request the server received, from either worker, is a row with one outcome.
    assert len(main) == sent
    assert set(main["outcome"]) <= set(OUTCOMES)
    assert (main["outcome"] == OK).sum() == FAST and (main["outcome"] == CENSORED).sum() == 20
    m = doc["metrics"]
    assert m["requests"] == m["ok"] + m["errors"] + m["timeouts"] + m["censored"]


@pytest.mark.timeout(120)
def test_the_offered_rate_is_split_between_the_workers(network: Network, tmp_path: Path) -> None:
    ctx = context(network, tmp_path)
    with stub_in(network, tmp_path, STUB_FAST="100000000") as proc:
        wait_healthy(proc, f"{ctx.target}/ready")
        cell = Cell("hello", "async", "-", 50, 1, rate=200)
        doc = run_cell(cell, spec(users=[], rates=[200], rate_slots=50), ctx).to_dict()
    assert doc["status"] == "ok", doc["reason"]
    window = doc["window_end"] - doc["window_start"]
    scheduled = doc["metrics"]["scheduled"]
    # Poisson arrivals at 200/s over the window, from two schedules of 100/s each.
    assert abs(scheduled - 200 * window) <= 4 * (200 * window) ** 0.5, (scheduled, window)
    loops = [w["open_loop"] for w in doc["locust"]["workers"]]
    assert sorted(loop["rate"] for loop in loops) == [100.0, 100.0]
    assert len({loop["seed"] for loop in loops}) == 2  # each worker its own schedule


@pytest.mark.timeout(150)
def test_a_worker_host_that_dies_fails_the_cell_naming_it(network: Network, tmp_path: Path) -> None:
    ctx = context(network, tmp_path)
    dead = network.namespace("w2")

    def kill_w2() -> None:
        time.sleep(2.0)
        pids = subprocess.run(
            ["ip", "netns", "pids", dead], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass

    with stub_in(network, tmp_path, STUB_FAST="100000000") as proc:
        wait_healthy(proc, f"{ctx.target}/ready")
        killer = threading.Thread(target=kill_w2)
        killer.start()
        doc = run_cell(Cell("hello", "async", "-", 20, 1), spec(duration_s=4), ctx).to_dict()
        killer.join()
    assert doc["status"] == "failed"
    assert "1 of 2 load workers sent no rows" in doc["reason"] and dead in doc["reason"]


@pytest.mark.timeout(120)
def test_the_lab_starts_its_own_server_where_the_load_hosts_reach_it(
    network: Network, tmp_path: Path
) -> None:
    # No --target: the lab's own `async` app, listening on the bridge's address (this machine,
    # as the namespaces see it), loaded from both workers.
    hosts = LoadHosts((network.namespace("w1"), network.namespace("w2")), network.exec_prefix(),
                      1, network.gateway)  # fmt: skip
    ctx = RunContext(
        out=tmp_path / "run", pinning=Pinning(None, None), load_hosts=hosts, scratch=tmp_path
    )
    doc = run_cell(Cell("hello", "async", "-", 20, 1), spec(), ctx).to_dict()
    assert doc["status"] == "ok", doc["reason"]
    assert doc["metrics"]["ok"] > 0 and doc["metrics"]["censored"] == 0
    assert len(doc["judged"]["load_hosts"]) == 2


@pytest.mark.timeout(300)
def test_the_probe_drives_its_cells_from_the_load_hosts(network: Network, tmp_path: Path) -> None:
    # `sync-async-lab probe --locust-hosts`: the user's app served where the workers reach it,
    # each cell's rows from both hosts, every request accounted for.
    out = tmp_path / "probe"
    hosts = [network.namespace("w1"), network.namespace("w2")]
    done = subprocess.run(
        [sys.executable, "-m", "probe", "probe", "tests.probe_apps:faulty", "--quick"]
        + ["--routes", "/fine", "--users", "10", "--out", str(out)]
        + ["--locust-hosts", ",".join(hosts), "--host-prefix", network.exec_prefix()]
        + ["--master-address", network.gateway],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*/cell.json"))]
    assert cells and all(c["status"] == "ok" for c in cells), [c["reason"] for c in cells]
    for doc in cells:
        assert {w["host"] for w in doc["judged"]["load_hosts"]} == set(hosts), doc["cell_id"]
        m = doc["metrics"]
        assert m["requests"] == m["ok"] + m["errors"] + m["timeouts"] + m["censored"] > 0
    routes = (out / "routes.csv").read_text()
    assert "/fine" in routes
