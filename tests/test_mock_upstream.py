"""The mock upstream: its latency model's arithmetic and seeding, and its OpenAI wire format."""

import json
import random
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


def test_models_and_health(upstream: TestClient) -> None:
    assert ModelList.model_validate(upstream.get("/v1/models").json()).data[0].id == mock.MODEL_ID
    assert upstream.get("/health").json() == {"status": "ok"}
