"""Real uvicorn processes for the fault, disconnect, write and client tests (issue 13).

A proxy arm is a variant with one HTTP client library (and, for the disconnect tests, a
`LAB_STREAM_CLOSE` choice); every arm talks to one real mock upstream (`servers.upstream`).
"""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.process import run_server

# Every variant with every client it can use (aiohttp has no sync API).
CLIENT_ARMS: list[tuple[str, str]] = [
    ("sync", "httpx"),
    ("sync", "httpx2"),
    ("async", "httpx"),
    ("async", "httpx2"),
    ("async", "aiohttp"),
    ("blocking", "httpx"),
    ("blocking", "httpx2"),
]
CLIENT_PARAMS = [pytest.param(arm, id=f"{arm[0]}-{arm[1]}") for arm in CLIENT_ARMS]
CHAT: dict[str, Any] = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}


@contextmanager
def live_mock(tmp: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The mock upstream in its own process; yields its base URL (no `/v1`)."""
    with run_server("upstream", tmp / "upstream.log", env or {}, python=sys.executable) as (
        _,
        url,
    ):
        yield url


@contextmanager
def live_proxy(
    variant: str, upstream_url: str, tmp: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A proxy variant in its own process, on its own database; yields its base URL."""
    tmp.mkdir(parents=True, exist_ok=True)
    full = {
        "LAB_UPSTREAM_URL": f"{upstream_url}/v1",
        "LAB_DB_PATH": str(tmp / "items.sqlite3"),
        "LAB_DB_SEED_ROWS": "100",
        "LAB_DB_RESET": "true",
        **(env or {}),
    }
    with run_server(variant, tmp / f"{variant}.log", full, python=sys.executable) as (_, url):
        yield url


def mock_stats(upstream_url: str) -> dict[str, Any]:
    return httpx.get(f"{upstream_url}/stats", timeout=5).json()


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until `check()` is true, or None if it is not within `timeout`."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(step)


def pool_active(proxy_url: str) -> float:
    """The proxy's peak upstream connections in use over its last second (`/metrics`)."""
    text = httpx.get(f"{proxy_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "lab_http_pool_connections":
            for sample in family.samples:
                if sample.labels.get("state") == "active":
                    return sample.value
    raise AssertionError("no lab_http_pool_connections{state=active} in /metrics")
