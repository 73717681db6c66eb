"""Issue 9's failures reproduced on purpose at small scale, and the fixes that work.

a. The `def` database stall (fastapi#12066): the threadpool tokens are taken by endpoints waiting
   for a pool connection, while the request holding it needs a token to validate its response.
b. The abandoned relay: a sync stream whose client left keeps its upstream stream open.
c. The mechanism under (b) at library level (encode/httpcore#990): the garbage collector closes
   an abandoned httpx stream inside whichever thread collects, and if that thread holds the
   connection pool's non-reentrant lock, it waits for itself forever.
"""

import gc
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.process import run_server

# Concurrency is what these tests assert: `make test` runs them alone, after the parallel part.
pytestmark = [pytest.mark.integration, pytest.mark.timing]

ROOT = Path(__file__).resolve().parent.parent
CHAT_STREAM = {
    "model": "mock",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 50,
    "stream": True,
}
SLOW = {"x-mock-itl-ms": "100"}  # 50 tokens, 100 ms apart: the stream lasts about 5 s


@pytest.fixture(scope="module")
def upstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("upstream") / "log"
    with run_server("upstream", log, {"LAB_MOCK_TTFT_MS": "0"}, python=sys.executable) as (_, url):
        yield url


# --- a. The database stall -----------------------------------------------------------------------

POOL_TIMEOUT_S = 1.0
CONCURRENT = 8  # 4 did not stall reliably (the first request often finished before the rest)
STALL_ENV = {
    "LAB_THREADPOOL_TOKENS": "2",
    "LAB_DB_POOL_SIZE": "1",
    "LAB_DB_MAX_OVERFLOW": "0",
    "LAB_DB_POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
    "LAB_DB_SEED_ROWS": "50",
    "LAB_DB_RESET": "true",
}
POOL_TIMEOUT_LOG = "QueuePool limit of size 1 overflow 0 reached"


def fire_together(url: str, n: int) -> tuple[list[int], float]:
    """`n` GET /items/{id} released at once; their statuses and the wall time of them all."""
    barrier = threading.Barrier(n)
    limits = httpx.Limits(max_connections=n)
    with httpx.Client(base_url=url, timeout=30, limits=limits) as client:

        def one(i: int) -> int:
            barrier.wait()
            return client.get(f"/items/{i + 1}").status_code

        with ThreadPoolExecutor(n) as pool:
            start = time.perf_counter()
            statuses = list(pool.map(one, range(n)))
            return statuses, time.perf_counter() - start


def run_stall(tmp_path: Path, arm: dict[str, str]) -> tuple[list[int], float, str]:
    env = {**STALL_ENV, "LAB_DB_PATH": str(tmp_path / "items.sqlite3"), **arm}
    log = tmp_path / "sync.log"
    with run_server("sync", log, env, python=sys.executable) as (_, url):
        statuses, elapsed = fire_together(url, CONCURRENT)
    return statuses, elapsed, log.read_text()


@pytest.mark.parametrize(
    "arm",
    [
        pytest.param({}, id="default"),
        # Releasing the session after response validation is not enough: the validation itself
        # needs a token, so the holder still waits behind the endpoints that wait for it.
        pytest.param({"LAB_DB_SESSION": "function"}, id="function-scope"),
    ],
)
def test_def_endpoints_stall_on_the_pool_until_it_times_out(
    tmp_path: Path, arm: dict[str, str]
) -> None:
    statuses, elapsed, log = run_stall(tmp_path, arm)
    assert 503 in statuses, statuses  # the waiters' pool timeout (issue 13: not a 500)
    assert 200 in statuses, statuses  # the holder got through, once the waiters gave up
    assert elapsed >= POOL_TIMEOUT_S * 0.95, elapsed
    assert POOL_TIMEOUT_LOG in log


@pytest.mark.parametrize(
    "arm",
    [
        pytest.param({"LAB_DB_SESSION": "statement"}, id="statement-session"),
        pytest.param({"LAB_DB_MAX_CONCURRENCY": "1"}, id="max-concurrency-1"),
        pytest.param({"LAB_FASTAPI_OVERFLOW": "true"}, id="fastapi-overflow"),
    ],
)
def test_fixes_answer_every_request_well_under_the_pool_timeout(
    tmp_path: Path, arm: dict[str, str]
) -> None:
    statuses, elapsed, log = run_stall(tmp_path, arm)
    assert statuses == [200] * CONCURRENT
    # A stall would last the pool timeout at least; the margin is for a loaded machine.
    assert elapsed < POOL_TIMEOUT_S * 0.9, elapsed
    assert POOL_TIMEOUT_LOG not in log


# --- b. The abandoned relay ----------------------------------------------------------------------


def open_streams(client: httpx.Client) -> int:
    return client.get("/stats").json()["open_streams"]


def wait_open_streams(client: httpx.Client, want: int, within_s: float) -> tuple[int, float]:
    """Poll the upstream until `want` streams are open; (last count, seconds it took)."""
    start = time.perf_counter()
    while (count := open_streams(client)) != want and time.perf_counter() - start < within_s:
        time.sleep(0.05)
    return count, time.perf_counter() - start


def abandon_a_stream(proxy_url: str, upstream: httpx.Client) -> None:
    """Start a slow stream through the proxy, read its first chunk, hang up."""
    with httpx.Client(timeout=10) as client:
        with client.stream(
            "POST", f"{proxy_url}/v1/chat/completions", json=CHAT_STREAM, headers=SLOW
        ) as response:
            assert response.status_code == 200
            # Keep the iterator: a dropped one would close the response (hang up) at once.
            chunks = response.iter_raw()
            assert next(chunks).startswith(b"data: ")
            assert open_streams(upstream) == 1
    # Leaving both blocks closed the connection to the proxy mid-stream.


@pytest.mark.parametrize(
    ("variant", "stream_close", "closes"),
    [
        pytest.param("sync", "generator", False, id="sync-generator"),
        pytest.param("sync", "response", True, id="sync-response"),
        # An abandoned async generator is finalized by the event loop at once: async never
        # needed the fix.
        pytest.param("async", "generator", True, id="async-generator"),
    ],
)
def test_abandoned_stream_is_closed_upstream_only_when_something_closes_it(
    upstream_url: str, tmp_path: Path, variant: str, stream_close: str, closes: bool
) -> None:
    env = {
        "LAB_UPSTREAM_URL": f"{upstream_url}/v1",
        "LAB_DB_PATH": str(tmp_path / "items.sqlite3"),
        "LAB_DB_SEED_ROWS": "10",
        "LAB_STREAM_CLOSE": stream_close,
    }
    with httpx.Client(base_url=upstream_url, timeout=5) as upstream:
        assert wait_open_streams(upstream, 0, 5)[0] == 0  # nothing left over from another test
        with run_server(variant, tmp_path / "log", env, python=sys.executable) as (_, url):
            abandon_a_stream(url, upstream)
            if closes:
                count, took = wait_open_streams(upstream, 0, 1.0)
                assert count == 0, f"upstream stream still open {took:.2f} s after the hang-up"
            else:
                # Still open for 1.5 s while the upstream has about 4 s of stream left to send.
                seen = []
                deadline = time.perf_counter() + 1.5
                while time.perf_counter() < deadline:
                    seen.append(open_streams(upstream))
                    time.sleep(0.1)
                assert len(seen) >= 5 and min(seen) >= 1, seen


# --- c. The garbage collector's self-deadlock, at library level ----------------------------------

GC_TIMEOUT_S = 2.0


def gc_scenario(library: str, url: str, close_first: bool) -> dict[str, Any]:
    """Abandon a relay of an open stream in a reference cycle; collect it under the pool's lock.

    Run in a child process (`_gc_child`): a collection stuck in a finalizer leaves CPython's
    collector marked as running, so no later `gc.collect()` in that process does anything.
    """
    import importlib

    from servers.sync_app import relay

    http = importlib.import_module(library)
    client = http.Client(base_url=url, timeout=10)
    closed_in: list[str] = []
    gc.disable()  # only the collection under the lock may find the cycle
    response = client.send(
        client.build_request("POST", "/v1/chat/completions", json=CHAT_STREAM, headers=SLOW),
        stream=True,
    )
    own_close = response.close

    def close() -> None:
        closed_in.append(threading.current_thread().name)
        own_close()

    response.close = close  # what the relay's `finally` calls
    body = relay(response)
    assert next(body).startswith(b"data: ")
    cycle: list[Any] = [body]
    cycle.append(cycle)
    if close_first:
        body.close()  # what ClosingStreamingResponse does when the response ends
    closed_before = list(closed_in)
    alive_ref = weakref.ref(body)
    del body, response, cycle, close
    assert alive_ref() is not None  # only the collector can free it now

    lock = client._transport._pool._optional_thread_lock

    def collect_under_the_lock() -> None:
        with lock:
            gc.collect()

    collector = threading.Thread(target=collect_under_the_lock, name="collector", daemon=True)
    collector.start()
    collector.join(GC_TIMEOUT_S)
    stuck_at = []
    if collector.is_alive() and (frame := sys._current_frames().get(collector.ident or 0)):
        stuck_at = [
            f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.name}"
            for f in traceback.extract_stack(frame)
        ]
    return {
        "deadlocked": collector.is_alive(),
        "closed_before": closed_before,
        "closed_in": closed_in,
        "stuck_at": stuck_at,
    }


def _gc_child() -> None:
    library, url, close_first = sys.argv[1:4]
    report = gc_scenario(library, url, close_first == "close")
    print(json.dumps(report), flush=True)
    os._exit(0)  # a deadlocked daemon thread holds the pool's lock: skip every exit handler


def run_gc_scenario(library: str, url: str, close_first: bool) -> dict[str, Any]:
    code = "from tests.test_stall_repro import _gc_child; _gc_child()"
    mode = "close" if close_first else "abandon"
    done = subprocess.run(
        [sys.executable, "-c", code, library, url, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gc_closing_an_abandoned_httpx_stream_under_the_pool_lock_deadlocks(
    upstream_url: str,
) -> None:
    report = run_gc_scenario("httpx", upstream_url, close_first=False)
    assert report["deadlocked"] is True
    # The collecting thread finalized the abandoned relay (its own frame, or the iterators it
    # delegates to with `yield from`), got to httpcore's pool stream closing, and waits there
    # for the pool's lock, which it already holds (httpcore 1.0.x: a threading.Lock).
    stuck = report["stuck_at"]
    below = stuck[stuck.index("tests/test_stall_repro.py:collect_under_the_lock") + 1 :]
    assert {"sync_app.py:relay", "httpx/_models.py:iter_bytes"} & set(below), stuck
    waits_on = ["_sync/connection_pool.py:close", "httpcore/_synchronization.py:__enter__"]
    assert below[-2:] == waits_on, stuck
    assert set(report["closed_in"]) <= {"collector"}  # nothing else closed it


def test_httpx2s_reentrant_pool_lock_survives_the_same_collection(upstream_url: str) -> None:
    report = run_gc_scenario("httpx2", upstream_url, close_first=False)
    assert report["deadlocked"] is False
    # The collection did finalize the relay, in the collecting thread, under the lock
    # (httpx2 closes the response from its iterator and from the relay's `finally`).
    assert report["closed_before"] == []
    assert set(report["closed_in"]) == {"collector"}


def test_closing_the_relay_deterministically_leaves_nothing_for_the_collector(
    upstream_url: str,
) -> None:
    report = run_gc_scenario("httpx", upstream_url, close_first=True)
    assert report == {
        "deadlocked": False,
        "closed_before": ["MainThread"],
        "closed_in": ["MainThread"],
        "stuck_at": [],
    }
