"""Bad input at every variant: 400 in OpenAI's envelope with `param` naming the field (never a
500), a refused chat body never reaches the upstream, the mock refuses it with the same answer,
bodies over `LAB_MAX_BODY_BYTES` are 413, and the server stays healthy afterwards."""

import json
import random
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from servers import mock
from servers.common import BodyLimitMiddleware
from servers.errors import BodyTooLarge
from servers.schemas import ErrorResponse
from servers.settings import Settings
from servers.upstream import app as upstream_app
from tests.conftest import SEED_ROWS, FakeUpstream
from tests.live import live_proxy

OK_MESSAGES = [{"role": "user", "content": "hi"}]
BASE: dict[str, Any] = {"model": "m", "messages": OK_MESSAGES}


def raw(text: str) -> bytes:
    return text.encode()


def body(**fields: Any) -> bytes:
    return json.dumps({**BASE, **fields}).encode()


def messages(*items: Any) -> bytes:
    return json.dumps({"model": "m", "messages": list(items)}).encode()


# (raw request body, the `param` OpenAI names); every one is a 400.
BAD_CHAT: list[Any] = [
    pytest.param(raw("{not json"), None, id="malformed-json"),
    pytest.param(b"", None, id="empty-body"),
    pytest.param(raw("null"), None, id="null-body"),
    pytest.param(raw("[1, 2]"), None, id="array-body"),
    pytest.param(raw('"hi"'), None, id="string-body"),
    pytest.param(raw("{}"), "model", id="missing-model"),
    pytest.param(raw('{"model": "m"}'), "messages", id="missing-messages"),
    pytest.param(raw('{"model": 5, "messages": []}'), "model", id="model-number"),
    pytest.param(raw('{"model": "m", "messages": "hi"}'), "messages", id="messages-string"),
    pytest.param(raw('{"model": "m", "messages": []}'), "messages", id="messages-empty"),
    pytest.param(messages("hi"), "messages[0]", id="message-string"),
    pytest.param(
        messages({"role": "wizard", "content": "x"}), "messages[0].role", id="role-wizard"
    ),
    pytest.param(messages({"content": "x"}), "messages[0].role", id="role-missing"),
    pytest.param(messages({"role": 5, "content": "x"}), "messages[0].role", id="role-int"),
    pytest.param(
        messages({"role": "user", "content": []}), "messages[0].content", id="content-empty-array"
    ),
    pytest.param(messages({"role": "user"}), "messages[0].content", id="content-missing"),
    pytest.param(messages({"role": "user", "content": 5}), "messages[0].content", id="content-int"),
    pytest.param(
        messages({"role": "user", "content": [{"type": "video"}]}),
        "messages[0].content[0].type",
        id="part-type-unknown",
    ),
    pytest.param(
        messages({"role": "user", "content": [{"type": "text"}]}),
        "messages[0].content[0].text",
        id="part-text-missing",
    ),
    pytest.param(
        messages({"role": "user", "content": ["hi"]}), "messages[0].content[0]", id="part-string"
    ),
    pytest.param(
        messages({"role": "system", "content": [{"type": "image_url", "image_url": {}}]}),
        "messages[0].content[0].type",
        id="system-image",
    ),
    pytest.param(
        messages({"role": "tool", "content": "x"}), "messages[0].tool_call_id", id="tool-no-id"
    ),
    pytest.param(
        messages(*OK_MESSAGES, {"role": "assistant", "content": 3}),
        "messages[1].content",
        id="second-message",
    ),
    pytest.param(
        messages({"role": "user", "content": "x", "name": 1}), "messages[0].name", id="name-int"
    ),
    pytest.param(body(temperature="hot"), "temperature", id="temperature-hot"),
    pytest.param(body(temperature=2.5), "temperature", id="temperature-2.5"),
    pytest.param(body(temperature=-0.1), "temperature", id="temperature-negative"),
    pytest.param(body(temperature=True), "temperature", id="temperature-bool"),
    pytest.param(body(top_p=1.5), "top_p", id="top-p-1.5"),
    pytest.param(body(n=0), "n", id="n-0"),
    pytest.param(body(n=1.5), "n", id="n-decimal"),
    pytest.param(body(n=129), "n", id="n-129"),
    pytest.param(body(max_tokens=-1), "max_tokens", id="max-tokens-negative"),
    pytest.param(body(max_tokens="10"), "max_tokens", id="max-tokens-string"),
    pytest.param(body(max_completion_tokens=0), "max_completion_tokens", id="max-completion-0"),
    pytest.param(body(stop=list("abcde")), "stop", id="stop-5"),
    pytest.param(body(stop=[1]), "stop[0]", id="stop-int"),
    pytest.param(body(stop=7), "stop", id="stop-number"),
    pytest.param(body(stream="yes"), "stream", id="stream-string"),
    pytest.param(
        body(stream_options={"include_usage": True}), "stream_options", id="options-no-stream"
    ),
    pytest.param(body(stream=True, stream_options="x"), "stream_options", id="options-string"),
    pytest.param(
        body(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
        id="include-usage-string",
    ),
    pytest.param(body(presence_penalty=3), "presence_penalty", id="presence-3"),
    pytest.param(body(frequency_penalty=-3), "frequency_penalty", id="frequency-minus-3"),
    pytest.param(body(top_logprobs=21), "top_logprobs", id="top-logprobs-21"),
    pytest.param(body(logprobs="yes"), "logprobs", id="logprobs-string"),
    pytest.param(body(seed="1"), "seed", id="seed-string"),
    pytest.param(body(user=5), "user", id="user-int"),
    pytest.param(raw('{"model": "m", "messages": [], "temperature": NaN}'), None, id="nan"),
    pytest.param(
        raw('{"model": "m", "messages": [{"role": "user", "content": "x"}], "x": Infinity}'),
        None,
        id="infinity-unknown-field",
    ),
    pytest.param(
        raw('{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'),
        None,
        id="lone-surrogate",
    ),
]

# Bodies OpenAI accepts: each reaches the upstream (and the mock serves it).
GOOD_CHAT: list[Any] = [
    pytest.param(body(), id="plain"),
    pytest.param(body(temperature=0, top_p=1, n=1, stop="x", max_tokens=1), id="bounds-low"),
    pytest.param(body(temperature=2, top_p=0, stop=list("abcd"), seed=-1), id="bounds-high"),
    pytest.param(body(stream=True, stream_options={"include_usage": True}), id="include-usage"),
    pytest.param(body(stream_options=None, stop=None, temperature=None), id="nulls"),
    pytest.param(body(some_future_field={"a": [1]}), id="unknown-field"),
    pytest.param(
        messages(
            {"role": "developer", "content": "be brief"},
            {"role": "system", "content": [{"type": "text", "text": "x"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "42"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            {"role": "user", "content": "", "name": "bob"},
        ),
        id="every-role-and-part",
    ),
]

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def mock_client() -> Iterator[TestClient]:
    with TestClient(upstream_app) as client:
        yield client


def assert_envelope(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = ErrorResponse.model_validate(response.json()).error
    assert error.message and "Traceback" not in error.message
    return error.model_dump()


@pytest.mark.parametrize(("content", "param"), BAD_CHAT)
def test_bad_chat_body_is_400_never_reaches_upstream_and_matches_the_mock(
    client: TestClient,
    upstream: FakeUpstream,
    mock_client: TestClient,
    content: bytes,
    param: str | None,
) -> None:
    response = client.post("/v1/chat/completions", content=content, headers=JSON)
    error = assert_envelope(response, 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert upstream.requests == []
    # The mock upstream refuses the same body with the same answer.
    direct = mock_client.post("/v1/chat/completions", content=content, headers=JSON)
    assert (direct.status_code, direct.json()) == (400, response.json())
    # ... and the server is healthy.
    assert client.post("/v1/chat/completions", content=body(), headers=JSON).status_code == 200


@pytest.mark.parametrize("content", GOOD_CHAT)
def test_good_chat_body_reaches_the_upstream(
    client: TestClient, upstream: FakeUpstream, content: bytes
) -> None:
    response = client.post("/v1/chat/completions", content=content, headers=JSON)
    assert response.status_code == 200, response.text
    assert len(upstream.requests) == 1
    sent = json.loads(upstream.requests[0].content)
    assert sent["messages"] == json.loads(content)["messages"]
    mock.plan_request(Settings(), {}, sent, random.Random(0))  # the mock serves it as sent


def test_a_body_not_sent_as_json_is_400(client: TestClient, upstream: FakeUpstream) -> None:
    response = client.post(
        "/v1/chat/completions", content=body(), headers={"content-type": "text/plain"}
    )
    assert assert_envelope(response, 400)["param"] is None
    assert upstream.requests == []


# (method, url, request kwargs, status, param) for the other routes.
BAD_OTHER: list[Any] = [
    pytest.param("GET", "/items/abc", {}, 400, "item_id", id="id-text"),
    pytest.param("GET", "/items/1.5", {}, 400, "item_id", id="id-decimal"),
    pytest.param("GET", "/items/0", {}, 400, "item_id", id="id-0"),
    pytest.param("GET", "/items/-3", {}, 400, "item_id", id="id-negative"),
    pytest.param("GET", f"/items/{10**20}", {}, 400, "item_id", id="id-beyond-sqlite"),
    pytest.param("GET", f"/items/{SEED_ROWS + 1}", {}, 404, None, id="id-unknown"),
    pytest.param("GET", "/items?limit=-1", {}, 400, "limit", id="limit-negative"),
    pytest.param("GET", "/items?limit=0", {}, 400, "limit", id="limit-0"),
    pytest.param("GET", "/items?limit=1000", {}, 400, "limit", id="page-oversized"),
    pytest.param("GET", "/items?limit=x", {}, 400, "limit", id="limit-text"),
    pytest.param("GET", "/items?offset=-1", {}, 400, "offset", id="offset-negative"),
    pytest.param("GET", f"/items?offset={10**20}", {}, 400, "offset", id="offset-beyond-sqlite"),
    pytest.param("GET", "/cpu?n=10001", {}, 400, "n", id="cpu-too-much"),
    pytest.param("POST", "/items", {"content": b"{bad"}, 400, None, id="item-malformed"),
    pytest.param("POST", "/items", {"content": b"[1]"}, 400, None, id="item-array"),
    pytest.param("POST", "/items", {"content": b""}, 400, None, id="item-empty"),
    pytest.param(
        "POST", "/items", {"json": {"name": "", "price": 1}}, 400, "name", id="name-empty"
    ),
    pytest.param(
        "POST", "/items", {"json": {"name": "x" * 201, "price": 1}}, 400, "name", id="name-long"
    ),
    pytest.param("POST", "/items", {"json": {"name": 5, "price": 1}}, 400, "name", id="name-int"),
    pytest.param("POST", "/items", {"json": {"name": "x"}}, 400, "price", id="price-missing"),
    pytest.param(
        "POST", "/items", {"json": {"name": "x", "price": -1}}, 400, "price", id="price-negative"
    ),
    pytest.param(
        "POST",
        "/items",
        {"content": b'{"name": "x", "price": Infinity}'},
        400,
        "price",
        id="price-inf",
    ),
    pytest.param(
        "POST",
        "/items",
        {"content": b'{"name": "\\ud800", "price": 1}'},
        400,
        "name",
        id="name-surrogate",
    ),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "param"), BAD_OTHER)
def test_bad_item_and_cpu_requests(
    client: TestClient,
    method: str,
    url: str,
    kwargs: dict[str, Any],
    status: int,
    param: str | None,
) -> None:
    headers = JSON if "content" in kwargs else {}
    error = assert_envelope(client.request(method, url, headers=headers, **kwargs), status)
    assert error["param"] == param
    if param:
        assert f"'{param}'" in error["message"]  # the message names the field
    if status == 404:
        assert error["message"] == f"item {SEED_ROWS + 1} not found"
    # Nothing was stored and the server is healthy.
    assert client.get(f"/items?offset={SEED_ROWS}").json() == []
    assert client.get("/items/1").status_code == 200


def test_a_far_offset_is_an_empty_page(client: TestClient) -> None:
    assert client.get("/items", params={"offset": 2**63 - 1}).json() == []


LIMIT = Settings().max_body_bytes


def test_a_body_over_the_limit_is_413_and_never_reaches_the_upstream(
    client: TestClient, upstream: FakeUpstream
) -> None:
    padded = body(pad="x" * LIMIT)
    assert len(padded) > LIMIT
    error = assert_envelope(client.post("/v1/chat/completions", content=padded, headers=JSON), 413)
    assert error["type"] == "invalid_request_error"
    at_limit = body(pad="x" * (LIMIT - len(body(pad=""))))
    assert len(at_limit) == LIMIT
    assert client.post("/v1/chat/completions", content=at_limit, headers=JSON).status_code == 200
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("url", ["/v1/chat/completions", "/items"])
def test_a_content_length_over_the_limit_is_refused_unread(client: TestClient, url: str) -> None:
    """A lying `Content-Length` (2 GiB for a short body): 413 before any byte is read."""
    headers = {**JSON, "content-length": str(2**31)}
    assert_envelope(client.post(url, content=body(), headers=headers), 413)
    assert client.get("/health").status_code == 200


# --- Over a real socket: a body that keeps coming is cut off at the limit -----------------------

SMALL_LIMIT = 64 * 1024
CAP = 256 * 1024 * 1024  # the test gives up sending here: the server never answered


def exchange(url: str, head: bytes, frame: bytes | None) -> tuple[bytes, int]:
    """Send `head`, then `frame` again and again until the server answers; (answer, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        while sent < CAP:
            readable, writable, _ = select.select([sock], [sock] if frame else [], [], 10)
            if readable:
                break
            if not writable:
                raise AssertionError("no answer within 10 s")
            try:
                sent += sock.send(frame or b"")
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
            answer.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]
        ):
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        return answer, sent


@pytest.mark.integration
@pytest.mark.parametrize("variant", ["sync", "async", "blocking"])
def test_a_body_that_keeps_coming_or_a_lying_length_is_413_over_a_real_socket(
    variant: str, tmp_path: Path
) -> None:
    env = {"LAB_MAX_BODY_BYTES": str(SMALL_LIMIT)}
    with live_proxy(variant, "http://127.0.0.1:9", tmp_path, env) as url:
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
        )
        # Chunked, never ending: one 16 KiB chunk after another.
        chunk = b"x" * 16384
        answer, sent = exchange(
            url, request + b"Transfer-Encoding: chunked\r\n\r\n", b"4000\r\n" + chunk + b"\r\n"
        )
        print(f"\nbody limit {variant}: 413 after {sent} bytes sent (limit {SMALL_LIMIT})")
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"code":"request_too_large"' in answer
        assert sent < 32 * 1024 * 1024  # answered long before the sender gave up
        # A Content-Length of 2 GiB, and 10 bytes: refused at once, without waiting for the rest.
        answer, _ = exchange(url, request + b"Content-Length: 2147483648\r\n\r\n" + b"{" * 10, None)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert httpx.get(f"{url}/health").status_code == 200


def test_the_limit_counts_what_arrives_not_what_was_declared() -> None:
    """A `Content-Length` of 10, and 40-byte chunks that keep coming: the read that passes the
    limit raises, and nothing past it is read."""
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 40, "more_body": True}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            await receive()

    async def send(message: Any) -> None:
        raise AssertionError("the middleware answers nothing itself here")

    scope = {"type": "http", "headers": [(b"content-length", b"10")]}
    limited = BodyLimitMiddleware(app, max_bytes=100)
    with pytest.raises(BodyTooLarge):
        anyio.run(limited, scope, receive, send)
    assert reads == 3  # 120 bytes > 100
