"""Shared fixtures: one parametrized fixture runs each test against every variant."""

import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import contract
from loadtests.postgres import run_postgres
from servers.timing import instrument_client

VARIANTS = contract.VARIANTS
UPSTREAM_BASE = "http://upstream.test/v1"
SEED_ROWS = 50
CHAT_BODY = {"model": "mock", "messages": [{"role": "user", "content": "hello there"}]}
# Every app style with every PostgreSQL driver it can run: (variant, LAB_DB_ASYNC_DRIVER).
PG_ARMS: list[tuple[str, str]] = [
    ("sync", "psycopg"),
    ("async", "psycopg"),
    ("async", "asyncpg"),
    ("blocking", "psycopg"),
]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL cluster the lab starts itself (loadtests/postgres.py), one per test module
    (half a second): a session-wide one would be stopped by the interrupt tests, which signal
    every child the orchestrator's `spawn` registered, as a Ctrl-C during a run must.

    In the system temp folder, not pytest's: as root, postgres runs as `nobody`, who cannot
    enter pytest's private folders.
    """
    with run_postgres() as cluster:
        yield cluster.url


def load_app(variant: str) -> FastAPI:
    """The app object of a variant, e.g. `servers.sync_app:app`."""
    return importlib.import_module(f"servers.{variant}_app").app


@dataclass
class FakeUpstream:
    """An upstream served by `httpx.MockTransport`; `handler` may be replaced per test."""

    requests: list[httpx.Request] = field(default_factory=list)
    handler: Callable[[httpx.Request], httpx.Response] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self.handler is not None:
            return self.handler(request)
        return httpx.Response(200, json=fake_completion(json.loads(request.content)))


def fake_completion(body: dict) -> dict:
    """A fixed `chat.completion` echoing the requested model."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private database file and a small seed for the apps under test."""
    db_path = tmp_path / "items.sqlite3"
    monkeypatch.setenv("LAB_DB_PATH", str(db_path))
    monkeypatch.setenv("LAB_DB_SEED_ROWS", str(SEED_ROWS))
    monkeypatch.setenv("LAB_UPSTREAM_URL", UPSTREAM_BASE)
    return db_path


@pytest.fixture(params=[pytest.param(v, id=v) for v in VARIANTS])
def variant(request: pytest.FixtureRequest) -> str:
    """Each handler style in turn."""
    return request.param


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


def make_client(variant: str, upstream: FakeUpstream) -> Iterator[TestClient]:
    """Start the variant's app (lifespan included) with its HTTP client on a mock transport."""
    app = load_app(variant)
    with TestClient(app) as client:
        real = app.state.http
        transport = httpx.MockTransport(upstream)
        # Same client type as the app's own, so the handler code path is unchanged.
        fake_cls = httpx.AsyncClient if isinstance(real, httpx.AsyncClient) else httpx.Client
        app.state.http = fake_cls(base_url=UPSTREAM_BASE, transport=transport)
        instrument_client(app.state.http)
        try:
            yield client
        finally:
            app.state.http = real


@pytest.fixture
def client(variant: str, lab_env: Path, upstream: FakeUpstream) -> Iterator[TestClient]:
    """A TestClient on the variant's app, upstream faked."""
    yield from make_client(variant, upstream)
