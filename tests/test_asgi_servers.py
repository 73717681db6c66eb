"""Every ASGI server the lab offers (contract.SERVERS, servers/launch.py) serves each app the
same, is honest about where handlers run, runs the `/metrics` monitor and stops gracefully.

One fleet for the whole module: every server x app (and the thread probe, tests/thread_app.py)
starts at once behind one mock upstream, so the servers boot side by side.
"""

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import contract
from loadtests.process import STOP_GRACE_S, free_port, server_command, spawn, wait_healthy
from servers.__main__ import main as servers_main
from servers.launch import LAUNCHERS
from tests.live import CHAT, live_mock

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
THREAD_APP = "tests.thread_app:app"
# tests/thread_app.py's variable (not imported: importing it adds its routes to this process's
# servers.sync_app, which the parity tests in the same pytest worker then see).
STOPPED_FILE = "THREAD_APP_STOPPED_FILE"
# The probe's token count: not anyio's default, so the lab's setting is seen to apply.
TOKENS = 3
SERVER_PARAMS = [pytest.param(s, id=s) for s in contract.SERVERS]
# Mock ids and timestamps differ from response to response; the rest must not.
_VOLATILE = re.compile(rb'"(id|created)":\s*("[^"]*"|\d+)')


@dataclass
class Served:
    """One server process of the fleet."""

    proc: Any
    url: str
    stopped: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Served]]:
    tmp = tmp_path_factory.mktemp("fleet")
    with ExitStack() as stack:
        upstream = stack.enter_context(live_mock(tmp))
        served: dict[tuple[str, str], Served] = {}
        for server in contract.SERVERS:
            for app in (*contract.VARIANTS, THREAD_APP):
                name = f"{server}-{app.split(':')[0]}"
                port = free_port()
                env = {
                    "LAB_UPSTREAM_URL": f"{upstream}/v1",
                    "LAB_DB_PATH": str(tmp / f"{name}.sqlite3"),
                    "LAB_DB_SEED_ROWS": "20",
                    "LAB_DB_RESET": "true",
                    STOPPED_FILE: str(tmp / f"{name}.stopped"),
                }
                if app == THREAD_APP:
                    env["LAB_THREADPOOL_TOKENS"] = str(TOKENS)
                cmd = server_command(app, port, sys.executable, server)
                proc = stack.enter_context(spawn(cmd, tmp / f"{name}.log", env, cwd=REPO))
                served[(server, app)] = Served(
                    proc, f"http://127.0.0.1:{port}", Path(env[STOPPED_FILE])
                )
        # They boot side by side; a loaded machine (make test's other workers) may be slow.
        for s in served.values():
            wait_healthy(s.proc, f"{s.url}/health", 90)
        yield served


def answers(url: str) -> list[tuple[int, bytes]]:
    """Status and body (mock ids and timestamps masked) of the requests parity compares."""
    with httpx.Client(base_url=url, timeout=10) as client:
        responses = [
            client.get("/hello"),
            client.get("/items/1"),
            client.get("/items/0"),
            client.post("/v1/chat/completions", json=CHAT),
            client.post("/v1/chat/completions", json={**CHAT, "stream": True}),
            client.post("/v1/chat/completions", json={"model": "m", "messages": []}),
        ]
    return [(r.status_code, _VOLATILE.sub(rb'"\1":"-"', r.content)) for r in responses]


def test_the_launcher_offers_every_server_of_the_contract() -> None:
    assert set(LAUNCHERS) == set(contract.SERVERS)
    assert contract.DEFAULT_SERVER in contract.SERVERS
    with pytest.raises(SystemExit):
        servers_main(["sync", "--server", "gunicorn"])
    with pytest.raises(SystemExit):
        servers_main(["not-an-app"])


def test_every_server_answers_every_app_the_same(fleet: dict[tuple[str, str], Served]) -> None:
    keys = [(s, v) for s in contract.SERVERS for v in contract.VARIANTS]
    with ThreadPoolExecutor(8) as pool:
        got = dict(zip(keys, pool.map(lambda k: answers(fleet[k].url), keys), strict=True))
    reference = got[(contract.DEFAULT_SERVER, "sync")]
    assert [status for status, _ in reference] == [200, 200, 400, 200, 200, 400]
    assert b"data: [DONE]" in reference[4][1]
    for key, found in got.items():
        assert found == reference, key


@pytest.mark.parametrize("server", SERVER_PARAMS)
def test_the_metrics_monitor_samples_the_loop_under_every_server(
    fleet: dict[tuple[str, str], Served], server: str
) -> None:
    url = fleet[(server, "sync")].url
    samples: dict[str, float] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, sample.value)
        if samples.get("lab_event_loop_lag_seconds_count", 0) > 0:
            break
        samples.clear()
        time.sleep(0.2)
    assert samples["lab_threadpool_tokens_total"] == 40
    assert samples["lab_event_loop_lag_seconds_count"] > 0


@pytest.mark.parametrize("server", SERVER_PARAMS)
def test_def_runs_on_an_anyio_thread_and_async_def_on_the_loop(
    fleet: dict[tuple[str, str], Served], server: str
) -> None:
    url = fleet[(server, THREAD_APP)].url
    sync = httpx.get(f"{url}/_where/def", timeout=10).json()
    coro = httpx.get(f"{url}/_where/async", timeout=10).json()
    assert sync["thread"] == "AnyIO worker thread" and not sync["main"]
    assert sync["ident"] != sync["loop_ident"]
    assert coro["ident"] == sync["loop_ident"] and coro["main"]
    # The lab's token count, not the server's own threads, bounds `def` endpoints.
    assert sync["limiter"]["total_tokens"] == TOKENS and sync["limiter"]["borrowed_tokens"] >= 1
    assert coro["loop"] == sync["loop"]
    expected = "asyncio" if server in ("uvicorn-asyncio", "hypercorn") else "uvloop"
    assert coro["loop"].startswith(expected), coro["loop"]


@pytest.mark.parametrize("server", SERVER_PARAMS)
def test_anyio_tokens_bound_def_endpoints_under_every_server(
    fleet: dict[tuple[str, str], Served], server: str
) -> None:
    url, calls, hold_s = fleet[(server, THREAD_APP)].url, 3 * TOKENS, 0.15
    start = time.monotonic()
    with ThreadPoolExecutor(calls) as pool:
        got = list(
            pool.map(
                lambda _: httpx.get(f"{url}/_where/def?hold_ms={hold_s * 1000:.0f}", timeout=10),
                range(calls),
            )
        )
    elapsed = time.monotonic() - start
    borrowed = [r.json()["limiter"]["borrowed_tokens"] for r in got]
    assert max(borrowed) == TOKENS
    # Three waves of TOKENS: never more at once.
    assert elapsed >= 3 * hold_s * 0.95


@pytest.mark.parametrize("server", SERVER_PARAMS)
def test_every_server_stops_gracefully_on_sigterm(
    fleet: dict[tuple[str, str], Served], server: str
) -> None:
    """Last in the module: it stops the probe's processes."""
    served = fleet[(server, THREAD_APP)]
    os.killpg(served.proc.pid, signal.SIGTERM)
    served.proc.wait(STOP_GRACE_S)
    # The app's lifespan ran to its end (the lab app's shutdown, then the probe's marker).
    assert served.stopped.read_text() == "stopped"
