"""Bad input at every variant: 400 in OpenAI's envelope with `param` naming the field (never a
500), a refused chat body never reaches the upstream, the mock refuses it with the same answer,
bodies over `LAB_MAX_BODY_BYTES` are 413, and the server stays healthy afterwards."""

import json
import random
import select
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from loadtests.process import free_port, spawn, wait_healthy
from servers import mock
from servers.common import BodyLimitMiddleware
from servers.errors import BodyTooLarge
from servers.schemas import ErrorResponse
from servers.settings import Settings
from servers.upstream import app as upstream_app
from tests.conftest import SEED_ROWS, FakeUpstream
from tests.live import live_proxy

REPO = Path(__file__).resolve().parent.parent
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


# --- Every client reads the 413 (issue 21): the refused body is drained before the close -------

BIG = 8 * 1024 * 1024  # a chat body of 8 MiB, 8x the default limit
PIECE = 64 * 1024


def big_body() -> bytes:
    return body(pad="x" * BIG)


def pieces(content: bytes) -> Iterator[bytes]:
    """The body as an iterator: every client then sends it chunked (no Content-Length)."""
    for start in range(0, len(content), PIECE):
        yield content[start : start + PIECE]


def post_urllib(url: str, content: bytes, chunked: bool) -> tuple[int, bytes]:
    """The standard library: it sends `Connection: close` and its whole body before it reads."""
    import urllib.error
    import urllib.request

    data: Any = pieces(content) if chunked else content
    headers = {"Content-Type": "application/json"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_requests(url: str, content: bytes, chunked: bool) -> tuple[int, bytes]:
    import requests

    data: Any = pieces(content) if chunked else content
    response = requests.post(url, data=data, headers=JSON, timeout=20)
    return response.status_code, response.content


def post_httpx(url: str, content: bytes, chunked: bool) -> tuple[int, bytes]:
    data: Any = pieces(content) if chunked else content
    response = httpx.post(url, content=data, headers=JSON, timeout=20)
    return response.status_code, response.content


BIG_CLIENTS = {"urllib": post_urllib, "requests": post_requests, "httpx": post_httpx}


@contextmanager
def live_uvicorn(app: str, http: str, tmp: Path, env: dict[str, str]) -> Iterator[str]:
    """`uvicorn <app> --http <http>` in its own process (the lab's launcher always runs
    httptools); yields its base URL once `/health` answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(REPO), "--http", http]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    with spawn(cmd, tmp / f"uvicorn-{http}.log", env) as proc:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"


@contextmanager
def live_variant(variant: str, http: str, tmp: Path) -> Iterator[str]:
    """A variant under uvicorn's `http` protocol, its upstream unreachable (never needed)."""
    if http == "httptools":
        with live_proxy(variant, "http://127.0.0.1:9", tmp) as url:
            yield url
        return
    env = {
        "LAB_UPSTREAM_URL": "http://127.0.0.1:9/v1",
        "LAB_DB_PATH": str(tmp / "items.sqlite3"),
        "LAB_DB_SEED_ROWS": "100",
    }
    with live_uvicorn(f"servers.{variant}_app:app", http, tmp, env) as url:
        yield url


# Each variant under the launcher's httptools; the middleware is shared, so h11 runs one.
SERVERS = [(v, "httptools") for v in ("sync", "async", "blocking")] + [("sync", "h11")]


@pytest.mark.integration
@pytest.mark.parametrize(("variant", "http"), SERVERS, ids=["-".join(s) for s in SERVERS])
def test_every_client_reads_the_413_of_an_8_mib_body(
    variant: str, http: str, tmp_path: Path
) -> None:
    """urllib, requests and httpx each send an 8 MiB chat body, with a `Content-Length` over the
    limit and chunked (it runs past the limit as it comes), to a real server at the default
    limit: each reads the 413 in OpenAI's envelope, none sees its connection reset."""
    content = big_body()
    got: dict[str, Any] = {}
    with live_variant(variant, http, tmp_path) as url:
        for name, post in BIG_CLIENTS.items():
            for framing in ("content-length", "chunked"):
                try:
                    status, answer = post(
                        f"{url}/v1/chat/completions", content, framing == "chunked"
                    )
                    code = json.loads(answer)["error"]["code"] if status == 413 else answer[:80]
                    got[f"{name}/{framing}"] = (status, code)
                except Exception as exc:  # what each client saw, all at once in the message
                    got[f"{name}/{framing}"] = repr(exc)[:120]
        assert httpx.get(f"{url}/health").status_code == 200
    wanted = dict.fromkeys(got, (413, "request_too_large"))
    assert got == wanted


@pytest.mark.integration
@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_uvicorn_hands_over_no_body_once_the_response_has_ended(http: str, tmp_path: Path) -> None:
    """Why the drain comes before the end of the response (`tests/receive_probe.py`): once a
    response has ended, both protocols answer `receive()` at once with `http.disconnect` and
    none of the 8 MiB the client is still sending; with `Connection: close` (urllib) they then
    close with the body unread and urllib sees a reset instead of the 413. A 413 written whole
    but not ended (`more_body`) lets the app read the body to its end, and urllib reads the 413.
    """
    log = tmp_path / "probe.log"
    with live_uvicorn("tests.receive_probe:app", http, tmp_path, {"PROBE_LOG": str(log)}) as url:
        try:
            ended: Any = post_urllib(f"{url}/ended", big_body(), chunked=False)
        except OSError as exc:  # URLError wraps the reset (or the broken pipe)
            ended = repr(exc)
        held = post_urllib(f"{url}/held", big_body(), chunked=False)
    seen = {r["path"]: r for r in map(json.loads, log.read_text().splitlines())}
    print(f"\nuvicorn {http}: urllib got {ended!r} / {held[0]}; the app saw {seen}")
    assert seen["/ended"]["first"] == "http.disconnect"
    assert (seen["/ended"]["receives"], seen["/ended"]["bytes"]) == (1, 0)
    assert "Error" in str(ended)  # reset or broken pipe, never the 413
    assert seen["/held"]["bytes"] == len(big_body())
    assert held == (413, b'{"error":"too large"}')


def sent_until_closed(url: str, head: bytes, frame: bytes | None) -> tuple[bytes, int, float]:
    """Send `head`, then `frame` again and again (or nothing) while reading, until the server
    closes the connection: (what it answered, bytes sent after its answer, seconds from the
    answer to the close)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        answer, after, answered_at = b"", 0, None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if frame else [], [], 1)
            if readable:
                try:
                    more = sock.recv(65536)
                except ConnectionResetError:
                    more = b""
                if not more:
                    assert answered_at is not None, "closed before answering"
                    return answer, after, time.monotonic() - answered_at
                answer += more
                answered_at = answered_at or time.monotonic()
            if writable and frame:
                try:
                    sent = sock.send(frame)
                except (BrokenPipeError, ConnectionResetError):
                    assert answered_at is not None, "closed before answering"
                    return answer, after, time.monotonic() - answered_at
                after += sent if answered_at is not None else 0
                if after > CAP:
                    break
        raise AssertionError(f"still open after {after} bytes: the drain has no bound")


@pytest.mark.integration
def test_a_refused_body_is_drained_up_to_its_bound_then_the_connection_closes(
    tmp_path: Path,
) -> None:
    """With a 64 KiB limit and a drain of 1 MiB or 1 s: a chunked body that never ends gets
    its 413 at once and the connection closed after about 1 MiB more (the kernel's buffers on
    top); a 2 GiB `Content-Length` whose body never comes gets its 413 at once and the close
    after about 1 s. Before the drain existed, uvicorn read a kept-alive body to its end, without
    any bound, and closed a silent one after its 5 s keep-alive timeout."""
    env = {
        "LAB_MAX_BODY_BYTES": str(SMALL_LIMIT),
        "LAB_BODY_DRAIN_BYTES": str(1024 * 1024),
        "LAB_BODY_DRAIN_S": "1",
    }
    with live_proxy("async", "http://127.0.0.1:9", tmp_path, env) as url:
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
        )
        frame = b"4000\r\n" + b"x" * 16384 + b"\r\n"
        answer, after, took = sent_until_closed(
            url, head + b"Transfer-Encoding: chunked\r\n\r\n", frame
        )
        print(f"\ndrain: closed {took:.2f} s and {after} bytes after the 413 (never-ending body)")
        assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
        assert after < 24 * 1024 * 1024  # 1 MiB drained, the rest in the buffers between
        head += b"Content-Length: 2147483648\r\n\r\n{"
        answer, _, took = sent_until_closed(url, head, None)
        print(f"drain: closed {took:.2f} s after the 413 (a body that never comes)")
        assert answer.startswith(b"HTTP/1.1 413")
        assert 0.8 < took < 3.0
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
