"""The same behaviour from every handler style, with the upstream faked by httpx.MockTransport."""

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from servers.cpu import burn
from servers.schemas import ChatCompletion, ErrorResponse, Item
from servers.sse import parse_sse_data
from tests.conftest import SEED_ROWS, FakeUpstream

CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = ErrorResponse.model_validate(response.json()).error
    assert error.message
    if code is not None:
        assert error.code == code
    return error.model_dump()


def test_health_and_hello(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/hello").json() == {"message": "hello"}


def test_ready(client: TestClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_cpu_is_deterministic(client: TestClient) -> None:
    assert client.get("/cpu", params={"n": 2}).json() == {"n": 2, "result": burn(2)}
    assert_error(client.get("/cpu", params={"n": -1}), 400, "invalid_value")


def test_read_item(client: TestClient) -> None:
    item = Item.model_validate(client.get("/items/7").json())
    assert item.id == 7 and item.name == "item-7"


def test_missing_item_is_404_in_openai_envelope(client: TestClient) -> None:
    assert_error(client.get(f"/items/{SEED_ROWS + 1}"), 404)


def test_list_items_pages_in_id_order(client: TestClient) -> None:
    page = client.get("/items", params={"limit": 3, "offset": 5}).json()
    assert [i["id"] for i in page] == [6, 7, 8]
    assert len(client.get("/items").json()) == 10
    assert_error(client.get("/items", params={"limit": 0}), 400)


def test_create_item_then_read_it(client: TestClient) -> None:
    created = client.post("/items", json={"name": "new", "description": None, "price": 2.5})
    assert created.status_code == 201
    item = created.json()
    assert item["id"] == SEED_ROWS + 1
    assert client.get(f"/items/{item['id']}").json() == item


def test_create_item_validates(client: TestClient) -> None:
    error = assert_error(client.post("/items", json={"name": "", "price": -1}), 400)
    assert error["param"] in ("name", "price")


def test_chat_forwards_body_and_mock_headers(client: TestClient, upstream: FakeUpstream) -> None:
    body = {**CHAT, "temperature": 0.5, "some_future_field": [1]}
    response = client.post("/v1/chat/completions", json=body, headers={"x-mock-ttft-ms": "7"})
    assert response.status_code == 200, response.text
    assert ChatCompletion.model_validate(response.json()).model == "mock"
    sent = upstream.requests[-1]
    assert sent.url == "http://upstream.test/v1/chat/completions"
    assert json.loads(sent.content) == body
    assert sent.headers["x-mock-ttft-ms"] == "7"


def test_chat_stream_relays_events(client: TestClient, upstream: FakeUpstream) -> None:
    events = [json.dumps({"i": i}) for i in range(3)] + ["[DONE]"]
    sse = "".join(f"data: {e}\n\n" for e in events).encode()
    upstream.handler = lambda request: httpx.Response(
        200, content=sse, headers={"content-type": "text/event-stream"}
    )
    with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert parse_sse_data(list(response.iter_lines())) == events
    assert json.loads(upstream.requests[-1].content)["stream"] is True


@pytest.mark.parametrize(
    ("upstream_status", "status", "code"),
    [
        pytest.param(500, 502, "bad_gateway", id="500-is-502"),
        pytest.param(503, 502, "bad_gateway", id="503-is-502"),
        pytest.param(400, 400, None, id="400-passes-through"),
    ],
)
def test_upstream_error_status(
    client: TestClient, upstream: FakeUpstream, upstream_status: int, status: int, code: str | None
) -> None:
    upstream.handler = lambda request: httpx.Response(
        upstream_status,
        json={"error": {"message": "nope", "type": "x", "param": None, "code": None}},
    )
    assert_error(client.post("/v1/chat/completions", json=CHAT), status, code)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_429_keeps_retry_after(
    client: TestClient, upstream: FakeUpstream, stream: bool
) -> None:
    upstream.handler = lambda request: httpx.Response(
        429, headers={"retry-after": "3"}, json={"error": {"message": "slow down"}}
    )
    response = client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    error = assert_error(response, 429, "rate_limit_exceeded")
    assert response.headers["retry-after"] == "3"
    assert error["message"] == "slow down"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        pytest.param(httpx.ReadTimeout("slow"), 504, "upstream_timeout", id="timeout-is-504"),
        pytest.param(httpx.ConnectError("refused"), 502, "bad_gateway", id="connect-is-502"),
        pytest.param(httpx.PoolTimeout("pool"), 504, "pool_timeout", id="pool-timeout-is-504"),
    ],
)
def test_upstream_transport_errors(
    client: TestClient, upstream: FakeUpstream, exc: httpx.HTTPError, status: int, code: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    upstream.handler = fail
    assert_error(client.post("/v1/chat/completions", json=CHAT), status, code)


def test_bad_chat_request_is_400(client: TestClient, upstream: FakeUpstream) -> None:
    error = assert_error(client.post("/v1/chat/completions", json={"model": "m"}), 400)
    assert error["param"] == "messages"
    assert upstream.requests == []
