"""Real uvicorn processes: the mock upstream and each proxy variant on free ports."""

import json
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.process import run_server

# Timing is what these tests assert: `make test` runs them alone, after the parallel part.
pytestmark = [pytest.mark.integration, pytest.mark.timing]

TTFT_MS, ITL_MS, TOKENS = 150, 30, 6
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": TOKENS}


@pytest.fixture(scope="module")
def upstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "LAB_MOCK_TTFT_MS": str(TTFT_MS),
        "LAB_MOCK_ITL_MS": str(ITL_MS),
        "LAB_MOCK_STALL_S": "5",
    }
    log = tmp_path_factory.mktemp("upstream") / "log"
    with run_server("upstream", log, env, python=sys.executable) as (_, url):
        yield url


PROXIES = [
    pytest.param(("sync", "httpx"), id="sync"),
    pytest.param(("async", "httpx"), id="async"),
    pytest.param(("async", "aiohttp"), id="async-aiohttp"),
    pytest.param(("blocking", "httpx"), id="blocking"),
]


@pytest.fixture(scope="module", params=PROXIES)
def proxy(
    request: pytest.FixtureRequest, upstream_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    variant, client = request.param
    tmp = tmp_path_factory.mktemp(f"{variant}-{client}")
    env = {
        "LAB_UPSTREAM_URL": f"{upstream_url}/v1",
        "LAB_HTTP_CLIENT": client,
        "LAB_HTTP_TIMEOUT_S": "1",
        "LAB_DB_PATH": str(tmp / "items.sqlite3"),
        "LAB_DB_SEED_ROWS": "100",
    }
    with run_server(variant, tmp / "log", env, python=sys.executable) as (_, url):
        yield variant, url


def test_stream_arrives_token_by_token_with_configured_timing(proxy: tuple[str, str]) -> None:
    _, url = proxy
    arrivals: list[float] = []
    events: list[str] = []
    start = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.perf_counter() - start)
                events.append(line[5:].strip())
    assert events[-1] == "[DONE]"
    tokens = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:TOKENS]]
    assert all(tokens) and len(events) == TOKENS + 2
    ttft_ms = arrivals[0] * 1000
    gaps_ms = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:TOKENS], strict=False)]
    # Arriving spread out by about ITL proves the proxy relays chunks instead of buffering.
    assert TTFT_MS * 0.9 <= ttft_ms <= TTFT_MS + 150, ttft_ms
    assert ITL_MS * 0.6 <= statistics.median(gaps_ms) <= ITL_MS * 2.5, gaps_ms


def test_openai_client_works_against_the_proxy(proxy: tuple[str, str]) -> None:
    _, url = proxy
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    try:
        reply = client.chat.completions.create(
            model="mock", messages=CHAT["messages"], max_tokens=3
        )
        assert reply.choices[0].message.content == "the quick brown"
        assert reply.usage is not None and reply.usage.completion_tokens == 3
        stream = client.chat.completions.create(
            model="mock", messages=CHAT["messages"], max_tokens=3, stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "the quick brown"
    finally:
        client.close()


def test_openai_client_errors_come_through_the_proxy(proxy: tuple[str, str]) -> None:
    _, url = proxy
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    try:
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(
                model="mock", messages=CHAT["messages"], extra_headers={"x-mock-fault": "429"}
            )
        assert limited.value.response.headers["retry-after"] == "1"
        with pytest.raises(openai.InternalServerError) as stalled:
            client.chat.completions.create(
                model="mock", messages=CHAT["messages"], extra_headers={"x-mock-fault": "stall"}
            )
        assert stalled.value.status_code == 504
        assert stalled.value.body["code"] == "upstream_timeout"
    finally:
        client.close()


def test_openai_client_works_against_the_upstream(upstream_url: str) -> None:
    client = openai.OpenAI(base_url=f"{upstream_url}/v1", api_key="unused", max_retries=0)
    try:
        assert client.models.list().data[0].id == "mock-llm"
        stream = client.chat.completions.create(
            model="mock", messages=CHAT["messages"], max_tokens=2, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "the quick"
    finally:
        client.close()


def test_blocking_stalls_everyone_and_the_others_do_not(proxy: tuple[str, str]) -> None:
    """While slow upstream calls are in flight, /hello is instant unless the loop is blocked."""
    variant, url = proxy
    slow = {"x-mock-ttft-ms": "800", "x-mock-itl-ms": "0"}
    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(4) as pool:
        calls = [
            pool.submit(client.post, "/v1/chat/completions", json=CHAT, headers=slow)
            for _ in range(3)
        ]
        time.sleep(0.2)
        start = time.perf_counter()
        assert client.get("/hello").status_code == 200
        hello_ms = (time.perf_counter() - start) * 1000
        assert all(c.result().status_code == 200 for c in calls)
    if variant == "blocking":
        assert hello_ms > 400, hello_ms
    else:
        assert hello_ms < 300, hello_ms


def test_unreachable_upstream_is_502(tmp_path: Path) -> None:
    env = {"LAB_UPSTREAM_URL": "http://127.0.0.1:9/v1", "LAB_DB_PATH": str(tmp_path / "db")}
    with run_server("async", tmp_path / "log", env, python=sys.executable) as (_, url):
        response = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_gateway"


def test_server_is_killed_even_when_the_test_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with run_server("upstream", tmp_path / "log", python=sys.executable) as (_, url):
            raise RuntimeError("boom")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=1)


def test_metrics_see_the_upstream_pool_and_server_timing(proxy: tuple[str, str]) -> None:
    _, url = proxy
    with httpx.Client(base_url=url, timeout=10) as client:
        reply = client.post("/v1/chat/completions", json=CHAT)
        assert "upstream;dur=" in reply.headers["server-timing"]
        time.sleep(1.1)  # one publishing window
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    states = {s.labels["state"] for s in families["lab_http_pool_connections"].samples}
    assert {"active", "waiting"} <= states
    assert families["lab_event_loop_lag_seconds"].samples


def test_observe_off_in_a_real_server(upstream_url: str, tmp_path: Path) -> None:
    """`LAB_OBSERVE=false` as the benchmark sets it: in the environment of a fresh process."""
    env = {
        "LAB_OBSERVE": "false",
        "LAB_UPSTREAM_URL": f"{upstream_url}/v1",
        "LAB_DB_PATH": str(tmp_path / "items.sqlite3"),
        "LAB_DB_SEED_ROWS": "10",
    }
    with run_server("sync", tmp_path / "log", env, python=sys.executable) as (_, url):
        with httpx.Client(base_url=url, timeout=10) as client:
            chat = client.post("/v1/chat/completions", json=CHAT)
            item = client.get("/items/1")
            time.sleep(0.3)  # the monitor, were it running, would have sampled by now
            metrics = client.get("/metrics")
            ready = client.get("/ready")
    assert chat.status_code == 200 and "server-timing" not in chat.headers
    assert item.status_code == 200 and "server-timing" not in item.headers
    assert metrics.status_code == 200 and "process_cpu_seconds_total" in metrics.text
    assert "lab_" not in metrics.text
    assert ready.json() == {"status": "ready"}


def test_upstream_stats_in_a_real_process(tmp_path: Path) -> None:
    with run_server("upstream", tmp_path / "log", python=sys.executable) as (_, url):
        with httpx.Client(base_url=url, timeout=10) as client:
            headers = {"x-mock-ttft-ms": "40", "x-mock-itl-ms": "0"}
            body = {**CHAT, "max_tokens": 1}
            for _ in range(4):
                assert client.post("/v1/chat/completions", json=body, headers=headers).is_success
            slow = {"x-mock-ttft-ms": "1", "x-mock-itl-ms": "200"}
            with client.stream(
                "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=slow
            ) as r:
                # Keep the iterator: a dropped `iter_lines()` generator closes the response.
                lines = r.iter_lines()
                assert next(lines).startswith("data:")
                assert client.get("/stats").json()["open_streams"] == 1
            # The client hung up mid-stream: uvicorn tells the app, the stream closes.
            deadline = time.monotonic() + 3
            while (stats := client.get("/stats").json())["open_streams"] and (
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
    assert stats["open_streams"] == 0
    assert stats["requests"] == 4
    assert stats["configured_ms_sum"] == pytest.approx(4 * 40)
    assert 40 - 2 <= stats["served_ms_sum"] / 4 <= 40 + 60, stats
    assert stats["ttft_ms_sum"] == pytest.approx(stats["served_ms_sum"])


@pytest.mark.parametrize("client", ["httpx", "aiohttp"])
def test_a_full_upstream_pool_answers_504_pool_timeout_with_every_client(
    upstream_url: str, tmp_path: Path, client: str
) -> None:
    # One upstream connection, held by a slow stream (a token every 300 ms for about 6 s); the
    # next request waits for it, and its 1 s pool timeout ends the wait with the same answer
    # whatever the client (aiohttp reports it as a connect timeout: servers/proxy.py corrects it).
    env = {
        "LAB_UPSTREAM_URL": f"{upstream_url}/v1",
        "LAB_HTTP_CLIENT": client,
        "LAB_HTTP_MAX_CONNECTIONS": "1",
        "LAB_HTTP_TIMEOUT_S": "1",
        "LAB_DB_PATH": str(tmp_path / "items.sqlite3"),
    }
    slow = {**CHAT, "max_tokens": 20, "stream": True}
    with run_server("async", tmp_path / "log", env, python=sys.executable) as (_, url):
        headers = {"x-mock-ttft-ms": "50", "x-mock-itl-ms": "300"}
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json=slow, headers=headers, timeout=30
        ) as held:
            assert held.status_code == 200
            lines = held.iter_lines()  # kept: a dropped iterator would close the stream
            assert next(lines).startswith("data:")
            second = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=30)
    assert second.status_code == 504, second.text
    assert second.json()["error"]["code"] == "pool_timeout"
