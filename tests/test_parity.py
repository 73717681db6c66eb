"""The three apps are the same API (parity) and each is the handler style it claims (honesty)."""

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Route

from tests.conftest import VARIANTS, FakeUpstream, load_app, make_client

SERVERS = Path(__file__).resolve().parent.parent / "servers"

# Requests whose answers must be byte-for-byte equal across the variants.
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/health", {}),
    ("GET", "/hello", {}),
    ("GET", "/ready", {}),
    ("GET", "/cpu?n=3", {}),
    ("GET", "/cpu?n=abc", {}),
    ("GET", "/items/3", {}),
    ("GET", "/items/3?wait_ms=5", {}),
    ("GET", "/items/3?wait_ms=-1", {}),
    ("GET", f"/items/{2**63 - 1}", {}),
    ("GET", "/items/0", {}),
    ("GET", "/items?limit=4&offset=2", {}),
    ("POST", "/items", {"json": {"name": "n", "description": "d", "price": 1.0}}),
    ("POST", "/items", {"json": {"name": "n"}}),
    ("POST", "/items", {"json": {"name": "n\u0000", "price": 1.0}}),
    (
        "POST",
        "/v1/chat/completions",
        {"json": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}},
    ),
    ("POST", "/v1/chat/completions", {"json": {"model": "m", "messages": [{"role": "wizard"}]}}),
    (
        "POST",
        "/v1/chat/completions",
        {"content": b"{bad", "headers": {"content-type": "application/json"}},
    ),
    (
        "POST",
        "/items",
        {"content": b"x" * (1024 * 1024 + 1), "headers": {"content-type": "application/json"}},
    ),
    ("GET", "/items/abc", {}),
    ("POST", "/v1/chat/completions", {"json": {"model": "m", "messages": []}}),
    ("GET", "/nope", {}),
]


def routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute)]


def calls(dependant: Dependant) -> list[Callable[..., Any]]:
    """Every dependency function under a route, recursively."""
    found = []
    for dep in dependant.dependencies:
        if dep.call is not None:
            found.append(dep.call)
        found.extend(calls(dep))
    return found


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def test_openapi_documents_are_equal() -> None:
    sync, *others = (load_app(v).openapi() for v in VARIANTS)
    for other in others:
        assert other == sync


def test_routes_mirror_each_other() -> None:
    def shape(app: FastAPI) -> list[tuple[Any, ...]]:
        return [
            (r.path, sorted(r.methods), r.name, r.response_model, r.status_code)
            for r in routes(app)
        ]

    sync, *others = (shape(load_app(v)) for v in VARIANTS)
    assert len(sync) == 7
    for other in others:
        assert other == sync


@pytest.mark.parametrize(
    ("variant", "want_async"),
    [pytest.param("sync", False, id="sync"), pytest.param("async", True, id="async"),
     pytest.param("blocking", True, id="blocking")],
)  # fmt: skip
def test_every_endpoint_and_dependency_is_the_claimed_style(variant: str, want_async: bool) -> None:
    for route in routes(load_app(variant)):
        for fn in [route.endpoint, *calls(route.dependant)]:
            assert is_async(fn) == want_async, f"{variant}: {route.path} uses {fn.__qualname__}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_ready_is_a_coroutine_outside_the_schema_in_every_style(variant: str) -> None:
    """`/ready` is `async def` even in `sync`: it must never wait for a threadpool token."""
    app = load_app(variant)
    ready = [r for r in app.routes if isinstance(r, Route) and r.path == "/ready"]
    assert len(ready) == 1
    assert inspect.iscoroutinefunction(ready[0].endpoint)
    assert "/ready" not in app.openapi()["paths"]


def _names_used(source: str) -> set[str]:
    """Dotted names (`httpx.Client`, `time.sleep`) and imported names in a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


BLOCKING_NAMES = {
    "httpx.Client",
    "sqlalchemy.orm.Session",
    "sqlalchemy.orm.sessionmaker",
    "servers.db.make_engine",
    "db.make_engine",
    "time.sleep",
    "requests",
    "sqlite3",
    "starlette.concurrency.run_in_threadpool",
    "fastapi.concurrency.run_in_threadpool",
}


def test_async_app_uses_no_blocking_library() -> None:
    used = _names_used((SERVERS / "async_app.py").read_text())
    assert used & BLOCKING_NAMES == set()
    assert {"httpx.AsyncClient", "sqlalchemy.ext.asyncio.AsyncSession"} <= used


def test_blocking_app_really_blocks_and_never_offloads() -> None:
    used = _names_used((SERVERS / "blocking_app.py").read_text())
    assert {"httpx.Client", "sqlalchemy.orm.Session", "db.make_engine"} <= used
    assert not used & {"anyio.to_thread", "starlette.concurrency.run_in_threadpool"}
    assert "AsyncClient" not in (SERVERS / "blocking_app.py").read_text()


def test_same_requests_get_same_responses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_DB_SEED_ROWS", "20")
    answers: dict[str, list[tuple[int, bytes]]] = {}
    for variant in VARIANTS:
        monkeypatch.setenv("LAB_DB_PATH", str(tmp_path / f"{variant}.sqlite3"))
        for client in make_client(variant, FakeUpstream()):
            answers[variant] = [
                (r.status_code, r.content)
                for r in (client.request(method, url, **kw) for method, url, kw in REQUESTS)
            ]
    assert answers["async"] == answers["sync"]
    assert answers["blocking"] == answers["sync"]
