"""Upstream and database faults in every variant: the status OpenAI's clients expect, in the
envelope, with no upstream URL or trace in any body; a stream that fails after it started ends
with exactly one well-formed error event; a full database pool or a locked database is a 503.

The first half fakes the upstream (`httpx.MockTransport`, byte-exact control of a failing
stream); the second injects the mock upstream's faults into real servers of every client arm.
"""

import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from loadtests.process import free_port, run_server
from servers import db, errors
from servers.schemas import ErrorResponse
from servers.sse import DONE, MEDIA_TYPE, parse_sse_data, sse_data
from tests.conftest import VARIANTS, FakeUpstream, load_app, make_client
from tests.live import CHAT, CLIENT_PARAMS, live_mock, live_proxy

STREAM = {**CHAT, "stream": True}
EVENTS = [sse_data({"i": i, "text": "word " * 5}) for i in range(4)] + [DONE]
WHOLE = b"".join(EVENTS)


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An upstream body sent in the given pieces, then failing with `error` (if any)."""

    def __init__(self, pieces: list[bytes], error: Exception | None = None) -> None:
        self.pieces, self.error = pieces, error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.error is not None:
            raise self.error


def streamed(pieces: list[bytes], error: Exception | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": MEDIA_TYPE}, stream=Chunks(pieces, error)
        )

    return handler


def relayed(client: TestClient) -> bytes:
    with client.stream("POST", "/v1/chat/completions", json=STREAM) as response:
        assert response.status_code == 200
        return response.read()


def cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 64, len(WHOLE)])
def test_a_clean_stream_is_relayed_byte_for_byte_however_it_is_cut(
    client: TestClient, upstream: FakeUpstream, size: int
) -> None:
    upstream.handler = streamed(cut(WHOLE, size))
    assert relayed(client) == WHOLE
    crlf = WHOLE.replace(b"\n", b"\r\n")
    upstream.handler = streamed(cut(crlf, size))
    assert relayed(client) == crlf
    upstream.handler = streamed(cut(WHOLE + b"data: unterminated", size))
    assert relayed(client) == WHOLE + b"data: unterminated"  # a clean end passes the rest on


MID_STREAM = [
    pytest.param(httpx.ReadError("boom"), 502, "bad_gateway", id="read-error"),
    pytest.param(httpx.RemoteProtocolError("incomplete"), 502, "bad_gateway", id="cut-off"),
    pytest.param(httpx.ReadTimeout("slow"), 504, "upstream_timeout", id="read-timeout"),
]


@pytest.mark.parametrize(("error", "status", "code"), MID_STREAM)
@pytest.mark.parametrize("whole_events", [0, 2], ids=["before-any-event", "after-two-events"])
def test_a_stream_failing_midway_ends_with_one_well_formed_error_event(
    client: TestClient,
    upstream: FakeUpstream,
    error: Exception,
    status: int,
    code: str,
    whole_events: int,
) -> None:
    sent = b"".join(EVENTS[:whole_events]) + EVENTS[whole_events][:9]  # half an event, then fail
    upstream.handler = streamed(cut(sent, 5), error)
    body = relayed(client)
    assert body.startswith(b"".join(EVENTS[:whole_events]))
    assert body.endswith(b"\n\n") and body.count(b"\n\n") == whole_events + 1
    events = [json.loads(e) for e in parse_sse_data(body.decode().split("\n"))]
    assert len(events) == whole_events + 1
    assert [e for e in events if "error" in e] == [events[-1]]
    error_body = ErrorResponse.model_validate(events[-1]).error
    assert error_body.code == code and error_body.type == "server_error"
    assert errors.from_transport_error(error).status_code == status


LEAKY = "Traceback (most recent call last):\n  File x\nhttp://upstream.test/v1 secret-token"


def _raise(error: Exception) -> httpx.Response:
    raise error


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        pytest.param(lambda: httpx.Response(500, text=LEAKY), 502, "bad_gateway",
                     id="500-with-trace"),
        pytest.param(lambda: httpx.Response(503, json={"error": {"message": LEAKY}}), 502,
                     "bad_gateway", id="503-envelope-with-trace"),
        pytest.param(lambda: _raise(httpx.ConnectError(f"upstream.test:80 {LEAKY}")), 502,
                     "bad_gateway", id="refused-with-url"),
        pytest.param(lambda: _raise(httpx.ConnectTimeout(f"upstream.test {LEAKY}")), 504,
                     "upstream_timeout", id="timeout-with-url"),
    ],
)  # fmt: skip
def test_no_upstream_url_or_trace_in_any_answer(
    client: TestClient, upstream: FakeUpstream, answer: Any, status: int, code: str
) -> None:
    upstream.handler = lambda request: answer()
    for stream in (False, True):
        response = client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        assert response.status_code == status
        assert ErrorResponse.model_validate(response.json()).error.code == code
        for leak in ("upstream.test", "Traceback", "secret-token", "http"):
            assert leak not in response.text


def test_an_upstream_4xx_envelope_is_relayed_unchanged(
    client: TestClient, upstream: FakeUpstream
) -> None:
    envelope = {
        "error": {
            "message": "This model's maximum context length is 8 tokens.",
            "type": "invalid_request_error",
            "param": "messages[0].content",
            "code": "context_length_exceeded",
        }
    }
    for status in (400, 404, 422):
        upstream.handler = lambda request, status=status: httpx.Response(status, json=envelope)
        response = client.post("/v1/chat/completions", json=CHAT)
        assert (response.status_code, response.json()) == (status, envelope)
        assert response.content == httpx.Response(status, json=envelope).content
    upstream.handler = lambda request: httpx.Response(404, text="<html>not found</html>")
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 404
    assert ErrorResponse.model_validate(response.json()).error.message == "upstream answered 404"


# --- The database ------------------------------------------------------------------------------


def hold_a_connection(app: Any, client: TestClient) -> Any:
    """Check out one connection of the app's pool; returns its release function."""
    engine = app.state.engine
    if isinstance(engine, AsyncEngine):

        async def connect() -> Any:
            return await engine.connect()

        conn = client.portal.call(connect)
        return lambda: client.portal.call(conn.close)
    conn = engine.connect()
    return conn.close


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_full_database_pool_is_503_after_the_pool_timeout(
    variant: str, lab_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_DB_POOL_SIZE", "1")
    monkeypatch.setenv("LAB_DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("LAB_DB_POOL_TIMEOUT_S", "0.3")
    for client in make_client(variant, FakeUpstream()):
        app = load_app(variant)
        release = hold_a_connection(app, client)
        start = time.perf_counter()
        response = client.get("/items/1")
        waited = time.perf_counter() - start
        release()
        assert response.status_code == 503, response.text
        error = ErrorResponse.model_validate(response.json()).error
        assert error.code == "db_pool_timeout" and "QueuePool" not in response.text
        assert 0.25 <= waited < 5, waited
        assert client.get("/items/1").status_code == 200  # the pool is whole again


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_locked_database_is_503_after_the_busy_timeout(
    variant: str, lab_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_DB_BUSY_TIMEOUT_MS", "200")
    for client in make_client(variant, FakeUpstream()):
        locker = sqlite3.connect(lab_env, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
            response = client.post("/items", json={"name": "n", "price": 1})
            assert client.get("/items/1").status_code == 200  # WAL: readers carry on
        finally:
            locker.rollback()
            locker.close()
        assert response.status_code == 503, response.text
        error = ErrorResponse.model_validate(response.json()).error
        assert error.code == "db_locked"
        assert client.post("/items", json={"name": "n", "price": 1}).status_code == 201


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_unexpected_error_is_a_bare_500_in_the_envelope(
    variant: str, lab_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(item_id: int) -> Any:
        raise RuntimeError("secret-token at /srv/app.py")

    monkeypatch.setattr(db, "select_item", broken)
    with TestClient(load_app(variant), raise_server_exceptions=False) as client:
        response = client.get("/items/1")
    assert response.status_code == 500
    error = ErrorResponse.model_validate(response.json()).error
    assert error.code == "internal_error" and "secret" not in response.text


# --- The mock upstream's faults, in real servers of every client arm ---------------------------

TIMEOUT_S = 1


@pytest.fixture(scope="module")
def mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"LAB_MOCK_TTFT_MS": "5", "LAB_MOCK_ITL_MS": "1", "LAB_MOCK_STALL_S": "5"}
    with live_mock(tmp_path_factory.mktemp("mock"), env) as url:
        yield url


@pytest.fixture(scope="module", params=CLIENT_PARAMS)
def proxy_url(
    request: pytest.FixtureRequest, mock_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    variant, client = request.param
    env = {"LAB_HTTP_CLIENT": client, "LAB_HTTP_TIMEOUT_S": str(TIMEOUT_S)}
    with live_proxy(variant, mock_url, tmp_path_factory.mktemp(f"{variant}-{client}"), env) as u:
        yield u


def assert_clean(text: str, upstream_url: str) -> None:
    """Nothing about the upstream or the code leaks."""
    port = upstream_url.rsplit(":", 1)[1]
    for leak in (upstream_url, f":{port}", "127.0.0.1", "Traceback", 'File "'):
        assert leak not in text


# (x-mock-fault, status, code) before any byte of the answer: the same streamed or not.
STATUS_FAULTS = [
    pytest.param("429", 429, "rate_limit_exceeded", id="429"),
    pytest.param("500", 502, "bad_gateway", id="500"),
    pytest.param("503", 502, "bad_gateway", id="503"),
    pytest.param("stall", 504, "upstream_timeout", id="stall"),
]


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("fault", "status", "code"), STATUS_FAULTS)
def test_injected_fault_is_answered_in_the_envelope(
    mock_url: str, proxy_url: str, fault: str, status: int, code: str, stream: bool
) -> None:
    start = time.monotonic()
    response = httpx.post(
        f"{proxy_url}/v1/chat/completions",
        json={**CHAT, "stream": stream},
        headers={"x-mock-fault": fault},
        timeout=30,
    )
    assert response.status_code == status, response.text
    assert ErrorResponse.model_validate(response.json()).error.code == code
    assert_clean(response.text, mock_url)
    if fault == "429":
        assert response.headers["retry-after"] == "1"
    if fault == "stall":
        assert TIMEOUT_S * 0.9 <= time.monotonic() - start < TIMEOUT_S + 2


@pytest.mark.integration
def test_a_non_streamed_answer_cut_off_is_502(mock_url: str, proxy_url: str) -> None:
    response = httpx.post(
        f"{proxy_url}/v1/chat/completions", json=CHAT, headers={"x-mock-fault": "abort"}
    )
    assert response.status_code in (502, 504), response.text
    assert ErrorResponse.model_validate(response.json()).error.type == "server_error"
    assert_clean(response.text, mock_url)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({"x-mock-fault": "abort"}, None, id="upstream-cut-off"),
        pytest.param({"x-mock-itl-ms": str(3000 * TIMEOUT_S)}, "upstream_timeout", id="token-late"),
    ],
)
def test_a_stream_failing_after_it_started_ends_with_one_error_event(
    mock_url: str, proxy_url: str, headers: dict[str, str], code: str | None
) -> None:
    body = {**STREAM, "max_tokens": 6}
    with httpx.stream(
        "POST", f"{proxy_url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        raw = response.read()
    text = raw.decode()
    assert text.endswith("\n\n") and "[DONE]" not in text
    events = [json.loads(e) for e in parse_sse_data(text.split("\n"))]
    assert len(events) == text.count("\n\n") >= 2  # a token, then the error: all well formed
    assert [e for e in events if "error" in e] == [events[-1]]
    error = ErrorResponse.model_validate(events[-1]).error
    assert error.type == "server_error"
    if code is not None:
        assert error.code == code
    assert_clean(text, mock_url)


@pytest.mark.integration
@pytest.mark.parametrize("arm", CLIENT_PARAMS)
def test_a_refused_connection_is_502(arm: tuple[str, str], tmp_path: Path) -> None:
    variant, client = arm
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {
        "LAB_HTTP_CLIENT": client,
        "LAB_UPSTREAM_URL": f"{dead}/v1",
        "LAB_DB_PATH": str(tmp_path / "db.sqlite3"),
        "LAB_DB_SEED_ROWS": "10",
    }
    with run_server(variant, tmp_path / "log", env, python=sys.executable) as (_, url):
        for stream in (False, True):
            response = httpx.post(
                f"{url}/v1/chat/completions", json={**CHAT, "stream": stream}, timeout=30
            )
            assert response.status_code == 502, response.text
            assert ErrorResponse.model_validate(response.json()).error.code == "bad_gateway"
            assert_clean(response.text, dead)


@pytest.mark.integration
@pytest.mark.parametrize("arm", CLIENT_PARAMS)
def test_a_full_upstream_pool_is_504_in_every_arm(
    arm: tuple[str, str], mock_url: str, tmp_path: Path
) -> None:
    """One upstream connection, held by a slow stream: the next request waits `http_timeout_s`
    for it, then answers 504 `pool_timeout`. In `blocking` the held stream's relay never gives
    the event loop back (its socket reads block it, and a send that does not wait is no
    checkpoint), so the next request is only read once the stream has ended: it finds the
    connection free and is served. Either way: no 500, no deadlock."""
    variant, client = arm
    env = {
        "LAB_HTTP_CLIENT": client,
        "LAB_HTTP_MAX_CONNECTIONS": "1",
        "LAB_HTTP_TIMEOUT_S": str(TIMEOUT_S),
    }
    slow = {**STREAM, "max_tokens": 10}
    headers = {"x-mock-ttft-ms": "1", "x-mock-itl-ms": "400"}  # about 4 s, a token every 0.4 s
    with live_proxy(variant, mock_url, tmp_path, env) as url:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json=slow, headers=headers, timeout=30
        ) as held:
            lines = held.iter_lines()  # kept: a dropped iterator would close the stream
            assert next(lines).startswith("data:")
            start = time.monotonic()
            second = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=30)
            waited = time.monotonic() - start
            rest = [line for line in lines if line.startswith("data:")]
        assert rest[-1] == "data: [DONE]"  # the held stream finished whole
        after = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=30)
    assert after.status_code == 200
    if variant == "blocking":
        assert second.status_code == 200, second.text
        assert waited > 2  # it waited for the rest of the held stream (about 3.6 s)
        return
    assert second.status_code == 504, second.text
    assert ErrorResponse.model_validate(second.json()).error.code == "pool_timeout"
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 2
