"""Every fix arm of issue 9: it answers what the default answers (parity) and is really on.

Arms read at import time (session scope, `max_concurrency`, admission) need the app module
reloaded under the arm's environment; `arm_app` does that and reloads it again afterwards, so
every other test sees the default app. The upstream is conftest's `FakeUpstream` served on a
real socket, so each arm's own HTTP client (httpx, httpx2, aiohttp) is the one that talks to it.
"""

import importlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fastapi.routing
import fastapi_overflow
import httpcore
import httpcore2
import httpx
import httpx2
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.testclient import TestClient
from httpx_aiohttp import AiohttpTransport
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from servers import common, db, streaming
from servers.sse import DONE, MEDIA_TYPE, sse_data
from tests.conftest import PG_ARMS, VARIANTS, FakeUpstream, fake_completion
from tests.test_parity import REQUESTS, calls, is_async, routes

# Every setting an arm changes: cleared for the default, so an exported LAB_* cannot leak in.
ARM_KEYS = (
    "LAB_DB_SESSION",
    "LAB_DB_MAX_CONCURRENCY",
    "LAB_DB_POOL_SIZE",
    "LAB_FASTAPI_OVERFLOW",
    "LAB_STREAM_CLOSE",
    "LAB_HTTP_MAX_CONCURRENCY",
    "LAB_HTTP_CLIENT",
    "LAB_DB_URL",
    "LAB_DB_ASYNC_DRIVER",
    "LAB_DB_MAX_OVERFLOW",
    "LAB_DB_RESET",
    "LAB_CANCEL_ON_DISCONNECT",
)
# An arm's LAB_DB_URL meaning "the session's PostgreSQL cluster" (conftest `pg_url`); each
# server drops and re-seeds the table, so every arm starts from the default's rows.
PG = "lab"
_CLUSTER: dict[str, str] = {}
POSTGRES = {"LAB_DB_URL": PG, "LAB_DB_RESET": "true"}


@dataclass(frozen=True)
class Arm:
    name: str
    env: dict[str, str]
    variants: tuple[str, ...] = VARIANTS


ARMS = [
    Arm("db-session-function", {"LAB_DB_SESSION": "function"}),
    Arm("db-session-statement", {"LAB_DB_SESSION": "statement"}),
    Arm("db-max-concurrency", {"LAB_DB_MAX_CONCURRENCY": "2"}),
    Arm("db-pool-size", {"LAB_DB_POOL_SIZE": "40"}),
    Arm("fastapi-overflow", {"LAB_FASTAPI_OVERFLOW": "true"}),
    Arm("stream-close-response", {"LAB_STREAM_CLOSE": "response"}),
    Arm("http-max-concurrency", {"LAB_HTTP_MAX_CONCURRENCY": "3"}),
    Arm("httpx2", {"LAB_HTTP_CLIENT": "httpx2"}),
    Arm("aiohttp", {"LAB_HTTP_CLIENT": "aiohttp"}, ("async",)),
    Arm("postgres", POSTGRES),
    Arm("postgres-asyncpg", {**POSTGRES, "LAB_DB_ASYNC_DRIVER": "asyncpg"}, ("async",)),
    Arm("postgres-pool-40", {**POSTGRES, "LAB_DB_POOL_SIZE": "40", "LAB_DB_MAX_OVERFLOW": "0"}),
    Arm("cancel-on-disconnect", {"LAB_CANCEL_ON_DISCONNECT": "true"}),
]
ARM_CASES = [
    pytest.param(arm, variant, id=f"{arm.name}-{variant}")
    for arm in ARMS
    for variant in arm.variants
]

STREAM_REQUEST = (
    "POST",
    "/v1/chat/completions",
    {"json": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}},
)
ARM_REQUESTS = [*REQUESTS, STREAM_REQUEST]


# --- The fake upstream on a real socket ----------------------------------------------------------


def stream_events(model: str) -> list[bytes]:
    """A fixed `chat.completion.chunk` stream, several events so the relay sees several chunks."""
    events = [
        sse_data(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            }
        )
        for word in ("the", " quick", " brown")
    ]
    return [*events, DONE]


def answer(request: httpx.Request) -> httpx.Response:
    """`FakeUpstream`'s completion, or a fixed event stream when `stream` is true."""
    body = json.loads(request.content)
    if body.get("stream"):
        return httpx.Response(
            200, headers={"content-type": MEDIA_TYPE}, content=iter(stream_events(body["model"]))
        )
    return httpx.Response(200, json=fake_completion(body))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small chunks go out at once, no delayed-ACK pauses
    server: "_Server"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        request = httpx.Request(
            self.command,
            f"http://{self.headers['host']}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        response = self.server.upstream(request)
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for chunk in response.iter_bytes():  # one HTTP chunk per event, flushed
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstream: FakeUpstream


@contextmanager
def serve(upstream: FakeUpstream) -> Iterator[str]:
    """`upstream` on 127.0.0.1; yields its `/v1` base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.upstream = upstream
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- Apps under an arm's environment -------------------------------------------------------------


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Set `env` (and unset every other arm key) in os.environ; restore it afterwards."""
    keys = {*ARM_KEYS, *env}
    saved = {key: os.environ.get(key) for key in keys}
    for key in ARM_KEYS:
        os.environ.pop(key, None)
    if env.get("LAB_DB_URL") == PG:
        env = {**env, "LAB_DB_URL": _CLUSTER["url"]}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def arm_app(variant: str, env: dict[str, str]) -> Iterator[FastAPI]:
    """The variant's app re-imported under `env` (kept set while in use), then re-imported as
    the default again, so import-time arms never outlive the test."""
    module = importlib.import_module(f"servers.{variant}_app")
    try:
        with environ(env):
            yield importlib.reload(module).app
    finally:
        with environ({}):
            importlib.reload(module)


@pytest.fixture(autouse=True)
def postgres_when_the_arm_needs_it(request: pytest.FixtureRequest) -> None:
    """Start (once) the session's PostgreSQL cluster for an arm on it."""
    params = getattr(request.node, "callspec", None)
    arm = params.params.get("arm") if params else None
    if isinstance(arm, Arm) and arm.env.get("LAB_DB_URL") == PG:
        _CLUSTER["url"] = request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def fastapi_own_serialize_response() -> Iterator[None]:
    """fastapi-overflow's patch is process-wide: whatever a test did, leave FastAPI's own."""
    yield
    fastapi.routing.serialize_response = common._SERIALIZE_RESPONSE


@pytest.fixture
def base_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private database and the fake upstream, for apps started inside the test."""
    upstream = FakeUpstream(handler=answer)
    with serve(upstream) as url:
        yield {
            "LAB_DB_PATH": str(tmp_path / "items.sqlite3"),
            "LAB_DB_SEED_ROWS": "20",
            "LAB_UPSTREAM_URL": url,
            "LAB_HTTP_TIMEOUT_S": "5",
        }


@contextmanager
def running(variant: str, env: dict[str, str]) -> Iterator[tuple[FastAPI, TestClient]]:
    """The arm's app, lifespan started, and a TestClient on it."""
    with arm_app(variant, env) as app, TestClient(app) as client:
        yield app, client


def run_requests(client: TestClient) -> list[tuple[int, bytes]]:
    responses = (client.request(method, url, **kw) for method, url, kw in ARM_REQUESTS)
    return [(r.status_code, r.content) for r in responses]


def dependants(dependant: Dependant) -> Iterator[Dependant]:
    """Every sub-dependant under a route, recursively."""
    for dep in dependant.dependencies:
        yield dep
        yield from dependants(dep)


def dependants_named(app: FastAPI, name: str) -> list[tuple[str, Dependant]]:
    return [
        (route.path, dep)
        for route in routes(app)
        for dep in dependants(route.dependant)
        if dep.call is not None and dep.call.__name__ == name
    ]


# --- a. Parity: the arm answers the default's bytes ----------------------------------------------


@pytest.fixture(scope="module")
def default_answers() -> dict[str, list[Any]]:
    """The default app's answers per variant, computed once (lazily)."""
    return {}


def answers_of(variant: str, env: dict[str, str]) -> tuple[list[tuple[int, bytes]], FakeUpstream]:
    upstream = FakeUpstream(handler=answer)
    with serve(upstream) as url:
        env = {**env, "LAB_UPSTREAM_URL": url}
        with running(variant, env) as (_, client):
            return run_requests(client), upstream


@pytest.mark.parametrize(("arm", "variant"), ARM_CASES)
def test_arm_answers_the_same_bytes_as_the_default(
    arm: Arm,
    variant: str,
    base_env: dict[str, str],
    tmp_path: Path,
    default_answers: dict[str, list[Any]],
) -> None:
    if variant not in default_answers:
        env = {**base_env, "LAB_DB_PATH": str(tmp_path / "default.sqlite3")}
        default_answers[variant] = answers_of(variant, env)[0]
    got, upstream = answers_of(variant, {**base_env, **arm.env})
    expected = default_answers[variant]
    # The requests reached the upstream (chat, then the stream) and the stream was relayed whole.
    assert [json.loads(r.content).get("stream", False) for r in upstream.requests] == [
        False,
        True,
    ]
    assert got[-1] == (200, b"".join(stream_events("m")))
    for request, want, have in zip(ARM_REQUESTS, expected, got, strict=True):
        assert have == want, request


def test_parity_can_fail(base_env: dict[str, str], tmp_path: Path) -> None:
    """The comparison sees a difference in the streamed bytes (not a tautology)."""
    with running("sync", {**base_env, "LAB_DB_PATH": str(tmp_path / "a.sqlite3")}) as (_, client):
        before = run_requests(client)

    def shorter_stream(request: httpx.Request) -> httpx.Response:
        if not json.loads(request.content).get("stream"):
            return answer(request)
        return httpx.Response(200, headers={"content-type": MEDIA_TYPE}, content=iter([DONE]))

    upstream = FakeUpstream(handler=shorter_stream)
    with serve(upstream) as url, running("sync", {**base_env, "LAB_UPSTREAM_URL": url}) as (_, c):
        after = run_requests(c)
    assert after[:-1] == before[:-1]
    assert after[-1] != before[-1]


# --- b. Active: the arm is really in effect ------------------------------------------------------


@pytest.mark.parametrize(("arm", "variant"), ARM_CASES)
def test_arm_keeps_the_openapi_document(arm: Arm, variant: str) -> None:
    with arm_app("sync", {}) as default:
        expected = default.openapi()
    with arm_app(variant, arm.env) as app:
        assert app.openapi() == expected


@pytest.mark.parametrize(("arm", "variant"), ARM_CASES)
def test_arm_keeps_every_endpoint_and_dependency_the_claimed_style(arm: Arm, variant: str) -> None:
    want_async = variant != "sync"
    with arm_app(variant, arm.env) as app:
        checked = []
        for route in routes(app):
            for fn in [route.endpoint, *calls(route.dependant)]:
                assert is_async(fn) == want_async, f"{variant}: {route.path} uses {fn.__qualname__}"
                checked.append(fn.__name__)
    assert {"get_session", "get_http"} <= set(checked)
    assert ("admit" in checked) == ("LAB_HTTP_MAX_CONCURRENCY" in arm.env)


@pytest.mark.parametrize("variant", VARIANTS)
def test_function_scope_is_on_every_session_dependency(variant: str) -> None:
    with arm_app(variant, {}) as app:
        default = dependants_named(app, "get_session")
        assert len(default) == 3
        assert all(dep.scope != "function" for _, dep in default)
    with arm_app(variant, {"LAB_DB_SESSION": "function"}) as app:
        found = dependants_named(app, "get_session")
    assert sorted(path for path, _ in found) == ["/items", "/items", "/items/{item_id}"]
    assert all(dep.scope == "function" for _, dep in found)


@pytest.mark.parametrize("variant", VARIANTS)
def test_max_concurrency_is_on_every_session_dependency(variant: str) -> None:
    with arm_app(variant, {}) as app:
        assert all(dep.concurrency is None for _, dep in dependants_named(app, "get_session"))
    with arm_app(variant, {"LAB_DB_MAX_CONCURRENCY": "2"}) as app:
        found = dependants_named(app, "get_session")
    assert len(found) == 3
    assert all(dep.concurrency is not None for _, dep in found)
    assert {dep.concurrency.max_concurrency for _, dep in found if dep.concurrency} == {2}


@pytest.mark.parametrize("variant", VARIANTS)
def test_admission_is_only_on_the_chat_route(variant: str) -> None:
    with arm_app(variant, {}) as app:
        assert dependants_named(app, "admit") == []
    with arm_app(variant, {"LAB_HTTP_MAX_CONCURRENCY": "3"}) as app:
        found = dependants_named(app, "admit")
    assert [path for path, _ in found] == ["/v1/chat/completions"]
    ((_, dep),) = found
    assert dep.concurrency is not None and dep.concurrency.max_concurrency == 3
    assert dep.call is not None and is_async(dep.call) == (variant != "sync")


@pytest.mark.parametrize("variant", VARIANTS)
def test_pool_size_reaches_the_engine(variant: str, base_env: dict[str, str]) -> None:
    with running(variant, base_env) as (app, _):
        assert app.state.engine.pool.size() == 5
    with running(variant, {**base_env, "LAB_DB_POOL_SIZE": "40"}) as (app, client):
        assert app.state.engine.pool.size() == 40
        assert client.get("/items/3").status_code == 200


def _checked_out_after_one_statement(app: FastAPI, client: TestClient) -> tuple[Any, int, Any]:
    """Open `app.state.sessions()`, run one statement, count checked-out connections inside."""
    engine = app.state.engine

    def sync() -> tuple[Any, int, Any]:
        with app.state.sessions() as session:
            row = session.execute(db.select_item(3)).mappings().one()
            return session, engine.pool.checkedout(), row

    async def async_() -> tuple[Any, int, Any]:
        async with app.state.sessions() as session:
            row = (await session.execute(db.select_item(3))).mappings().one()
            return session, engine.pool.checkedout(), row

    if hasattr(engine, "sync_engine"):
        return client.portal.call(async_)
    return sync()


@pytest.mark.parametrize("variant", VARIANTS)
def test_statement_session_returns_its_connection_after_each_statement(
    variant: str, base_env: dict[str, str]
) -> None:
    with running(variant, base_env) as (app, client):
        session, held, row = _checked_out_after_one_statement(app, client)
        assert isinstance(session, Session | AsyncSession)  # a real session per request
        assert held == 1  # the default session keeps its transaction's connection
        assert row["name"] == "item-3"
    with running(variant, {**base_env, "LAB_DB_SESSION": "statement"}) as (app, client):
        session, held, row = _checked_out_after_one_statement(app, client)
        want = db.StatementSession if variant != "async" else db.AsyncStatementSession
        assert type(session) is want
        assert held == 0  # returned before the endpoint goes on
        assert row["name"] == "item-3"  # the result was buffered
        assert app.state.engine.pool.checkedout() == 0


class ResponseStartProbe:
    """An ASGI wrapper counting the connections checked out when the response starts."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.at_start: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def probe(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.at_start.append(self.app.state.engine.pool.checkedout())
            await send(message)

        await self.app(scope, receive, probe if scope["type"] == "http" else send)


# While the response is validated / when it starts: `request` holds the connection through both,
# `function` releases it after validation, `statement` before the endpoint returns.
HELD = {"request": (1, 1), "function": (1, 0), "statement": (0, 0)}


@pytest.mark.parametrize("session_arm", list(HELD))
@pytest.mark.parametrize("variant", VARIANTS)
def test_session_arm_decides_how_long_the_connection_is_held(
    variant: str, session_arm: str, base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**base_env, "LAB_DB_SESSION": session_arm}
    at_serialize: list[int] = []
    with arm_app(variant, env) as app:
        probe = ResponseStartProbe(app)
        with TestClient(probe) as client:
            own = fastapi.routing.serialize_response  # after the lifespan chose it

            async def serialize(**kwargs: Any) -> Any:
                at_serialize.append(app.state.engine.pool.checkedout())
                return await own(**kwargs)

            monkeypatch.setattr(fastapi.routing, "serialize_response", serialize)
            response = client.get("/items/3")
            assert response.status_code == 200 and response.json()["id"] == 3
            assert app.state.engine.pool.checkedout() == 0
    assert (at_serialize, probe.at_start) == ([HELD[session_arm][0]], [HELD[session_arm][1]])


@pytest.mark.parametrize("variant", VARIANTS)
def test_overflow_patch_is_applied_and_undone(
    variant: str, base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[str] = []
    own_release = fastapi_overflow.run_in_release_threadpool

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        released.append(getattr(func, "__name__", repr(func)))
        return await own_release(func, *args, **kwargs)

    monkeypatch.setattr(fastapi_overflow, "run_in_release_threadpool", counting)
    with running(variant, {**base_env, "LAB_FASTAPI_OVERFLOW": "true"}) as (_, client):
        assert fastapi.routing.serialize_response is fastapi_overflow._patched_serialize_response
        assert client.get("/items/3").status_code == 200
    # A `def` endpoint's response validation ran on the reserved threads; a coroutine's did not.
    assert released == (["validate"] if variant == "sync" else [])
    with running(variant, base_env) as (_, client):
        assert fastapi.routing.serialize_response is common._SERIALIZE_RESPONSE
        assert fastapi.routing.serialize_response.__module__ == "fastapi.routing"
        assert client.get("/items/3").status_code == 200
    assert len(released) == (1 if variant == "sync" else 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_stream_close_response_uses_the_closing_response(
    variant: str, base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with running(variant, base_env) as (app, _):
        # Starlette's own response, which never closes its body.
        assert app.state.stream is streaming.plain_streaming_response
        made = app.state.stream(iter([b"x"]), upstream=None)
        assert type(made) is StreamingResponse
    closed: list[object] = []
    own_close = streaming.close_content

    async def counting(content: Any) -> None:
        closed.append(content)
        await own_close(content)

    monkeypatch.setattr(streaming, "close_content", counting)
    with running(variant, {**base_env, "LAB_STREAM_CLOSE": "response"}) as (app, client):
        assert app.state.stream is streaming.ClosingStreamingResponse
        _, url, kw = STREAM_REQUEST
        assert client.post(url, **kw).content == b"".join(stream_events("m"))
        assert client.post("/v1/chat/completions", json=kw["json"] | {"stream": False}).is_success
    # Only the streamed response closed its body (the relay generator of the app).
    assert [getattr(c, "__name__", None) for c in closed] == ["relay"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_httpx2_client_and_transport(variant: str, base_env: dict[str, str]) -> None:
    is_async_app = variant == "async"  # `blocking` calls the sync client from `async def`
    upstream = FakeUpstream(handler=answer)
    with serve(upstream) as url:
        env = {**base_env, "LAB_UPSTREAM_URL": url}
        with running(variant, env) as (app, client):
            assert type(app.state.http) is (httpx.AsyncClient if is_async_app else httpx.Client)
            pool = app.state.http._transport._pool
            assert isinstance(pool, httpcore.ConnectionPool | httpcore.AsyncConnectionPool)
            assert client.post("/v1/chat/completions", json=STREAM_REQUEST[2]["json"]).is_success
        with running(variant, {**env, "LAB_HTTP_CLIENT": "httpx2"}) as (app, client):
            assert type(app.state.http) is (httpx2.AsyncClient if is_async_app else httpx2.Client)
            transport = app.state.http._transport
            assert isinstance(transport, httpx2.HTTPTransport | httpx2.AsyncHTTPTransport)
            pool = transport._pool
            assert isinstance(pool, httpcore2.ConnectionPool | httpcore2.AsyncConnectionPool)
            assert client.post("/v1/chat/completions", json=STREAM_REQUEST[2]["json"]).is_success
    agents = [r.headers["user-agent"] for r in upstream.requests]
    assert agents[0].startswith("python-httpx/") and agents[1].startswith("python-httpx2/"), agents


def test_aiohttp_transport_carries_the_async_apps_requests(base_env: dict[str, str]) -> None:
    with running("async", base_env) as (app, _):
        assert not isinstance(app.state.http._transport, AiohttpTransport)
    with running("async", {**base_env, "LAB_HTTP_CLIENT": "aiohttp"}) as (app, client):
        transport = app.state.http._transport
        assert isinstance(transport, AiohttpTransport)
        sent: list[str] = []
        own = transport.handle_async_request

        async def counting(request: httpx.Request) -> httpx.Response:
            sent.append(request.url.path)
            return await own(request)

        transport.handle_async_request = counting
        _, url, kw = STREAM_REQUEST
        assert client.post(url, **kw).content == b"".join(stream_events("m"))
    assert sent == ["/v1/chat/completions"]


def test_aiohttp_is_refused_where_a_sync_client_is_needed() -> None:
    from servers import proxy
    from servers.settings import Settings

    assert proxy.http_module(Settings(http_client="aiohttp")).__name__ == "httpx"
    with pytest.raises(ValueError, match="async app"):
        proxy.http_module(Settings(http_client="aiohttp"), sync=True)
    assert proxy.http_module(Settings(http_client="httpx2"), sync=True).__name__ == "httpx2"


@pytest.mark.parametrize(("variant", "driver"), PG_ARMS)
def test_postgres_driver_reaches_the_engine(
    variant: str, driver: str, base_env: dict[str, str], pg_url: str
) -> None:
    """The arm runs the driver it names, on the cluster: a row written through the app is in
    PostgreSQL, and the async app's driver is an async one."""
    _CLUSTER["url"] = pg_url
    env = {**base_env, **POSTGRES, "LAB_DB_ASYNC_DRIVER": driver}
    with running(variant, env) as (app, client):
        engine = app.state.engine
        want = "postgresql+psycopg" if variant != "async" else f"postgresql+{driver}"
        assert engine.url.drivername == want
        assert engine.dialect.is_async == (variant == "async")
        created = client.post("/items", json={"name": f"via-{variant}-{driver}", "price": 1.0})
        assert created.status_code == 201
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT name FROM items WHERE id = %s", (created.json()["id"],))
        assert row.fetchone() == (f"via-{variant}-{driver}",)
