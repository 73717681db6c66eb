"""The mock upstream: its latency model's arithmetic and seeding, and its OpenAI wire format."""

import json
import random
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from servers import mock
from servers.latency import LatencyModel, choose_fault, count_prompt_tokens, token_text
from servers.schemas import ChatCompletion, ChatCompletionChunk, ErrorResponse, ModelList
from servers.settings import Settings
from servers.sse import parse_sse_data
from servers.upstream import app

BODY = {"model": "mock", "messages": [{"role": "user", "content": "one two three"}]}
FAST = {"x-mock-ttft-ms": "1", "x-mock-itl-ms": "1"}


def test_delays_without_jitter_are_exact() -> None:
    model = LatencyModel(ttft_ms=200, itl_ms=20)
    assert model.delays(4, random.Random(0)) == [0.2, 0.02, 0.02, 0.02]
    assert model.total_s(4) == pytest.approx(0.26)
    assert model.total_s(1) == pytest.approx(0.2)


def test_non_streaming_latency_is_ttft_plus_itl_per_further_token() -> None:
    model = LatencyModel(ttft_ms=100, itl_ms=10)
    assert sum(model.delays(16, random.Random(0))) == pytest.approx(model.total_s(16))
    assert model.total_s(16) == pytest.approx(0.25)


def test_jitter_is_bounded_and_seeded() -> None:
    model = LatencyModel(ttft_ms=100, itl_ms=10, jitter=0.5)
    first = model.delays(50, random.Random(42))
    assert first == model.delays(50, random.Random(42))
    assert first != model.delays(50, random.Random(43))
    assert 0.05 <= first[0] <= 0.15
    assert all(0.005 <= d <= 0.015 for d in first[1:])
    assert len(set(first[1:])) > 1


def test_delays_need_a_token() -> None:
    with pytest.raises(ValueError, match="tokens"):
        LatencyModel(1, 1).delays(0, random.Random(0))


def test_choose_fault_respects_rate() -> None:
    rng = random.Random(1)
    assert choose_fault("none", 1.0, rng) == "none"
    assert choose_fault("500", 0.0, rng) == "none"
    assert choose_fault("500", 1.0, rng) == "500"
    many = [choose_fault("429", 0.25, rng) for _ in range(4000)]
    assert 0.2 < many.count("429") / len(many) < 0.3


def test_tokens_and_prompt_counting() -> None:
    assert "".join(token_text(i) for i in range(3)) == "the quick brown"
    assert count_prompt_tokens([{"content": "a b c"}, {"content": ["x"]}, {"role": "x"}]) == 3


def test_plan_reads_headers_body_and_settings() -> None:
    settings = Settings(mock_ttft_ms=10, mock_itl_ms=5, mock_output_tokens=3)
    plan = mock.plan_request(settings, {}, BODY, random.Random(0))
    assert plan.delays == [0.01, 0.005, 0.005]
    assert plan.finish_reason == "stop"
    headers = {"x-mock-ttft-ms": "1", "x-mock-itl-ms": "2", "x-mock-fault": "503"}
    plan = mock.plan_request(settings, headers, {**BODY, "max_tokens": 2}, random.Random(0))
    assert plan.delays == [0.001, 0.002]
    assert plan.fault == "503" and plan.finish_reason == "length" and plan.prompt_tokens == 3


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"model": "m"}),
        ({}, {"model": 1, "messages": [{}]}),
        ({}, {**BODY, "max_tokens": 0}),
        ({"x-mock-ttft-ms": "soon"}, BODY),
        ({"x-mock-fault": "explode"}, BODY),
        ({"x-mock-jitter": "2"}, BODY),
        ({"x-mock-ttft-ms": "inf"}, BODY),
        ({}, {**BODY, "max_tokens": 10**9}),
        ({}, {**BODY, "messages": [{"role": "wizard", "content": "x"}]}),
        ({}, {**BODY, "temperature": "hot"}),
    ],
)
def test_plan_rejects_bad_requests(headers: dict[str, str], body: dict) -> None:
    with pytest.raises(mock.BadRequest):
        mock.plan_request(Settings(), headers, body, random.Random(0))


@pytest.fixture
def upstream() -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def test_non_streaming_completion_has_openai_shape(upstream: TestClient) -> None:
    response = upstream.post("/v1/chat/completions", json={**BODY, "max_tokens": 3}, headers=FAST)
    assert response.status_code == 200
    completion = ChatCompletion.model_validate(response.json())
    assert completion.choices[0].message.content == "the quick brown"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_streaming_completion_is_chunks_then_done(upstream: TestClient) -> None:
    body = {**BODY, "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}
    with upstream.stream("POST", "/v1/chat/completions", json=body, headers=FAST) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse_data(list(response.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(e)) for e in events[:-1]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:3]) == "the quick brown"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[3].choices[0].finish_reason == "length"
    assert chunks[4].choices == [] and chunks[4].model_extra["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("fault", ["429", "500", "503"])
def test_status_faults(upstream: TestClient, fault: str) -> None:
    response = upstream.post("/v1/chat/completions", json=BODY, headers={"x-mock-fault": fault})
    assert response.status_code == int(fault)
    ErrorResponse.model_validate(response.json())
    assert ("retry-after" in response.headers) == (fault == "429")


def test_fault_rate_zero_by_header_disables_it(upstream: TestClient) -> None:
    headers = {**FAST, "x-mock-fault": "500", "x-mock-fault-rate": "0"}
    assert upstream.post("/v1/chat/completions", json=BODY, headers=headers).status_code == 200


def test_abort_cuts_the_stream(upstream: TestClient) -> None:
    body = {**BODY, "max_tokens": 4, "stream": True}
    headers = {**FAST, "x-mock-fault": "abort"}
    with pytest.raises(Exception, match="aborted"):
        with upstream.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            list(r.iter_lines())


def test_bad_request_is_400_envelope(upstream: TestClient) -> None:
    response = upstream.post("/v1/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert ErrorResponse.model_validate(response.json()).error.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**BODY, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({**BODY, "temperature": "hot"}, "temperature"),
        ({**BODY, "max_tokens": 10**9}, "max_tokens"),
        ({**BODY, "stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_a_body_openai_refuses_is_400_with_its_param(
    upstream: TestClient, body: dict, param: str
) -> None:
    response = upstream.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = ErrorResponse.model_validate(response.json()).error
    assert error.param == param and error.type == "invalid_request_error" and error.code
    assert upstream.get("/stats").json()["requests"] == 0


def test_usage_is_null_on_every_chunk_but_the_last_when_asked_for(upstream: TestClient) -> None:
    for include in (True, False):
        body = {**BODY, "max_tokens": 2, "stream": True}
        if include:
            body["stream_options"] = {"include_usage": True}
        with upstream.stream("POST", "/v1/chat/completions", json=body, headers=FAST) as r:
            chunks = [json.loads(e) for e in parse_sse_data(list(r.iter_lines()))[:-1]]
        if include:
            assert [c.get("usage", "absent") for c in chunks[:-1]] == [None] * 3
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5
        else:
            assert all("usage" not in c for c in chunks) and len(chunks) == 3


def test_models_and_health(upstream: TestClient) -> None:
    assert ModelList.model_validate(upstream.get("/v1/models").json()).data[0].id == mock.MODEL_ID
    assert upstream.get("/health").json() == {"status": "ok"}


STATS_KEYS = {
    "requests",
    "served_ms_sum",
    "configured_ms_sum",
    "ttft_ms_sum",
    "open_streams",
    "streamed_bytes",
}


def test_stats_start_at_zero(upstream: TestClient) -> None:
    stats = upstream.get("/stats").json()
    assert set(stats) == STATS_KEYS
    assert all(v == 0 for v in stats.values())


def test_stats_count_completed_requests_served_near_configured(upstream: TestClient) -> None:
    # 3 tokens at TTFT 30 ms, ITL 10 ms: the model asks for 50 ms per request.
    headers = {"x-mock-ttft-ms": "30", "x-mock-itl-ms": "10"}
    body = {**BODY, "max_tokens": 3}
    for _ in range(3):
        assert upstream.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    for _ in range(3):
        stream = {**body, "stream": True}
        with upstream.stream("POST", "/v1/chat/completions", json=stream, headers=headers) as r:
            assert parse_sse_data(list(r.iter_lines()))[-1] == "[DONE]"
    stats = upstream.get("/stats").json()
    assert stats["requests"] == 6
    assert stats["configured_ms_sum"] == pytest.approx(6 * 50)
    assert 50 - 2 <= stats["served_ms_sum"] / 6 <= 50 + 40, stats
    # Non-streaming: the first token leaves with the body (~50 ms); streaming: after ~30 ms.
    assert 3 * 30 + 3 * 50 - 4 <= stats["ttft_ms_sum"] <= 3 * 30 + 3 * 50 + 6 * 40, stats
    assert stats["ttft_ms_sum"] < stats["served_ms_sum"] - 3 * 15  # streams: TTFT < total
    assert stats["open_streams"] == 0


def test_streamed_bytes_count_the_token_events_and_token_chars_lengthen_them(
    upstream: TestClient,
) -> None:
    stream = {**BODY, "max_tokens": 3, "stream": True}
    sizes = []
    for chars in ("0", "100"):
        headers = {"x-mock-itl-ms": "0", "x-mock-ttft-ms": "0", "x-mock-token-chars": chars}
        before = upstream.get("/stats").json()["streamed_bytes"]
        with upstream.stream("POST", "/v1/chat/completions", json=stream, headers=headers) as r:
            events = [line for line in r.iter_lines() if '"content":' in line]
        assert len(events) == 3
        deltas = [json.loads(e.removeprefix("data: "))["choices"][0]["delta"] for e in events]
        contents = [delta["content"] for delta in deltas]
        if chars == "100":
            assert [len(c.strip()) for c in contents] == [100, 100, 100]
        sizes.append(upstream.get("/stats").json()["streamed_bytes"] - before)
        assert sizes[-1] == sum(len(e) + 2 for e in events)  # each event and its blank line
    assert sizes[1] > sizes[0] + 3 * 90
    bad = {"x-mock-token-chars": "5000"}
    assert upstream.post("/v1/chat/completions", json=BODY, headers=bad).status_code == 400


def test_stats_configured_includes_jitter(upstream: TestClient) -> None:
    headers = {"x-mock-ttft-ms": "20", "x-mock-itl-ms": "0", "x-mock-jitter": "0.5"}
    for _ in range(4):
        upstream.post("/v1/chat/completions", json={**BODY, "max_tokens": 1}, headers=headers)
    stats = upstream.get("/stats").json()
    assert stats["requests"] == 4
    assert 4 * 10 <= stats["configured_ms_sum"] <= 4 * 30
    assert stats["configured_ms_sum"] != pytest.approx(4 * 20)
    assert stats["served_ms_sum"] >= stats["configured_ms_sum"] - 4 * 2


def test_stats_leave_out_faults_and_bad_requests(upstream: TestClient) -> None:
    for fault in ("429", "500", "503"):
        upstream.post("/v1/chat/completions", json=BODY, headers={"x-mock-fault": fault})
    upstream.post("/v1/chat/completions", content=b"{not json")
    body = {**BODY, "max_tokens": 4, "stream": True}
    with pytest.raises(Exception, match="aborted"):
        headers = {**FAST, "x-mock-fault": "abort"}
        with upstream.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            list(r.iter_lines())
    stats = upstream.get("/stats").json()
    assert stats["requests"] == 0 and stats["open_streams"] == 0


@pytest.mark.parametrize(
    "itl_ms",
    [
        # The mock sleeps before its next token when the client leaves.
        pytest.param("500", id="left-while-the-mock-waits"),
        # The next token is made and waits to be sent: Starlette would leave the generator
        # suspended at its `yield` for the garbage collector; ClosingStreamingResponse closes it.
        pytest.param("1", id="left-while-a-token-waits-to-be-sent"),
    ],
)
def test_open_streams_counts_a_stream_until_it_ends_or_the_client_leaves(
    upstream: TestClient, itl_ms: str
) -> None:
    body = {**BODY, "max_tokens": 50, "stream": True}
    headers = {"x-mock-ttft-ms": "1", "x-mock-itl-ms": itl_ms}
    with upstream.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data:")
        time.sleep(0.05)
        assert upstream.get("/stats").json()["open_streams"] == 1
    # Left after one token: the stream is closed at once and not counted as served.
    stats = upstream.get("/stats").json()
    assert stats["open_streams"] == 0 and stats["requests"] == 0
    with upstream.stream("POST", "/v1/chat/completions", json=body, headers=FAST) as r:
        list(r.iter_lines())
    assert upstream.get("/stats").json()["open_streams"] == 0


def test_served_stats_arithmetic() -> None:
    stats = mock.ServedStats()
    stats.record(served_s=0.06, configured_s=0.05, ttft_s=0.03)
    stats.record(served_s=0.04, configured_s=0.05, ttft_s=0.04)
    assert stats.to_dict() == pytest.approx(
        {
            "requests": 2,
            "served_ms_sum": 100.0,
            "configured_ms_sum": 100.0,
            "ttft_ms_sum": 70.0,
            "open_streams": 0,
            "streamed_bytes": 0,
        }
    )
    plan = mock.plan_request(
        Settings(mock_ttft_ms=30, mock_itl_ms=10), {}, {**BODY, "max_tokens": 4}, random.Random(0)
    )
    assert plan.configured_s == pytest.approx(0.06)
