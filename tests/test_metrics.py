"""`/metrics` and `Server-Timing`: real measurements on a real event loop, bounded in time."""

import importlib.util
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from servers import timing
from tests.conftest import CHAT_BODY, UPSTREAM_BASE, FakeUpstream, fake_completion, make_client


def scrape(client: TestClient) -> dict[str, float]:
    """Every sample, keyed `name` or `name{label=value}`."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def wait_for(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def slow_lags(samples: dict[str, float]) -> float:
    """Loop wake-ups later than 250 ms."""
    inf = samples["lab_event_loop_lag_seconds_bucket{le=+Inf}"]
    return inf - samples["lab_event_loop_lag_seconds_bucket{le=0.25}"]


def test_metrics_parse_and_name_what_they_measure(client: TestClient) -> None:
    assert wait_for(lambda: scrape(client)["lab_event_loop_lag_seconds_count"] > 0)
    samples = scrape(client)
    assert samples["lab_threadpool_tokens_total"] == 40
    assert samples["lab_db_pool_capacity"] == 15
    assert samples["process_resident_memory_bytes"] > 0
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_server_timing_splits_upstream_from_app_time(
    client: TestClient, upstream: FakeUpstream
) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)
        return httpx.Response(200, json=fake_completion(CHAT_BODY))

    upstream.handler = slow
    timing = client.post("/v1/chat/completions", json=CHAT_BODY).headers["server-timing"]
    parts = {p.split(";dur=")[0].strip(): float(p.split(";dur=")[1]) for p in timing.split(",")}
    assert parts["upstream"] >= 50 and parts["app"] >= parts["upstream"]
    db = client.get("/items/1").headers["server-timing"]
    assert "db;dur=" in db and "db;dur=0.000" not in db
    assert "server-timing" not in client.get("/hello").headers


@pytest.mark.parametrize("variant", ["blocking", "sync"], indirect=True)
def test_loop_lag_is_near_zero_idle_and_large_only_when_blocked(
    variant: str, client: TestClient, upstream: FakeUpstream
) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.6)
        return httpx.Response(200, json=fake_completion(CHAT_BODY))

    upstream.handler = slow
    time.sleep(0.3)
    idle = scrape(client)
    assert idle["lab_event_loop_lag_seconds_count"] > 5
    assert slow_lags(idle) == 0
    assert client.post("/v1/chat/completions", json=CHAT_BODY).status_code == 200
    after = scrape(client)
    if variant == "blocking":
        assert slow_lags(after) >= 1
    else:
        assert slow_lags(after) == 0


@pytest.mark.parametrize("variant", ["sync"], indirect=True)
def test_threadpool_gauges_rise_while_def_handlers_are_busy_and_fall_after(
    variant: str, client: TestClient, upstream: FakeUpstream
) -> None:
    release = threading.Event()

    def held(request: httpx.Request) -> httpx.Response:
        release.wait(10)
        return httpx.Response(200, json=fake_completion(CHAT_BODY))

    upstream.handler = held
    with ThreadPoolExecutor(6) as pool:
        calls = [pool.submit(client.post, "/v1/chat/completions", json=CHAT_BODY) for _ in range(6)]
        try:
            assert wait_for(lambda: scrape(client)["lab_threadpool_tokens_in_use"] >= 6)
        finally:
            release.set()
        assert all(c.result().status_code == 200 for c in calls)
    assert wait_for(lambda: scrape(client)["lab_threadpool_tokens_in_use"] == 0)


@pytest.mark.parametrize("variant", ["sync"], indirect=True)
def test_ready_answers_while_every_thread_is_busy(
    variant: str, lab_env: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One token, held by a blocked `def` call: `/hello` waits, `/ready` does not."""
    monkeypatch.setenv("LAB_THREADPOOL_TOKENS", "1")
    release = threading.Event()

    def held(request: httpx.Request) -> httpx.Response:
        release.wait(10)
        return httpx.Response(200, json=fake_completion(CHAT_BODY))

    upstream.handler = held
    for client in make_client(variant, upstream):
        with ThreadPoolExecutor(3) as pool:
            chat = pool.submit(client.post, "/v1/chat/completions", json=CHAT_BODY)
            try:
                # The handler is inside the upstream call: its thread holds the only token.
                assert wait_for(lambda: len(upstream.requests) == 1)
                hello = pool.submit(client.get, "/hello")
                with pytest.raises(FutureTimeout):
                    hello.result(timeout=0.3)  # a `def` route cannot start
                ready = pool.submit(client.get, "/ready").result(timeout=2)
                assert ready.status_code == 200 and ready.json() == {"status": "ready"}
                assert not hello.done()  # still exhausted while /ready answered
            finally:
                release.set()
            assert chat.result(timeout=5).status_code == 200
            assert hello.result(timeout=5).status_code == 200


def fresh_app(variant: str) -> FastAPI:
    """A new copy of the variant's module, so `create_app` reads `LAB_OBSERVE` again.

    The cached module (`tests.conftest.load_app`) is left alone.
    """
    spec = importlib.util.find_spec(f"servers.{variant}_app")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.mark.parametrize("observing", [True, False], ids=["observe", "no-observe"])
def test_lab_observe_switches_all_instrumentation(
    variant: str,
    lab_env: Path,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    observing: bool,
) -> None:
    monkeypatch.setenv("LAB_OBSERVE", str(observing).lower())
    app = fresh_app(variant)
    assert app.state.observe is observing
    middleware = [m.cls for m in app.user_middleware]
    assert (timing.ServerTimingMiddleware in middleware) is observing
    with TestClient(app) as client:
        task = app.state.monitor_task
        assert (task is not None and not task.done()) is observing
        real = app.state.http
        assert any(real.event_hooks.values()) is observing
        engine = getattr(app.state.engine, "sync_engine", app.state.engine)
        listening = event.contains(engine, "before_cursor_execute", timing._before_execute)
        assert listening is observing
        # The upstream faked, with whatever hooks the app installed on its own client.
        app.state.http = type(real)(base_url=UPSTREAM_BASE, transport=httpx.MockTransport(upstream))
        app.state.http.event_hooks = real.event_hooks
        try:
            chat = client.post("/v1/chat/completions", json=CHAT_BODY)
            item = client.get("/items/1")
            metrics = client.get("/metrics")
        finally:
            app.state.http = real
    assert chat.status_code == 200 and item.status_code == 200
    assert ("server-timing" in chat.headers) is observing
    assert ("server-timing" in item.headers) is observing
    assert metrics.status_code == 200
    assert "process_resident_memory_bytes" in metrics.text
    assert ("lab_threadpool_tokens_total" in metrics.text) is observing
