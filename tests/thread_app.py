"""The lab's `sync` app with two more routes that say where a handler runs, for every server.

`GET /_where/def` (a `def` endpoint) and `GET /_where/async` (an `async def` one) answer which
thread ran them, the event loop's thread and implementation, and anyio's default limiter as the
`def` endpoint saw it. `?hold_ms=N` keeps the `def` endpoint's thread for N ms, so concurrent
calls show how many tokens run at once. With `THREAD_APP_STOPPED_FILE` set, the app writes that
file once its lifespan (the lab app's own, then this module's) has shut down. Served by
`python -m servers tests.thread_app:app --server NAME` from the repository's root
(tests/test_asgi_servers.py).
"""

import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import anyio.to_thread
from fastapi import FastAPI, Query

from servers.launch import loop_name
from servers.sync_app import app

# When set, the lifespan's shutdown (the lab app's, then this) writes this file: a graceful stop.
# tests/test_asgi_servers.py names it too; it must not import this module (see there).
STOPPED_FILE = "THREAD_APP_STOPPED_FILE"
_lab_lifespan = app.router.lifespan_context


@asynccontextmanager
async def lifespan(a: FastAPI) -> AsyncIterator[None]:
    async with _lab_lifespan(a):
        yield
    if path := os.environ.get(STOPPED_FILE):
        Path(path).write_text("stopped")


app.router.lifespan_context = lifespan


def _limiter() -> dict[str, Any]:
    stats = anyio.to_thread.current_default_thread_limiter().statistics()
    return {
        "total_tokens": stats.total_tokens,
        "borrowed_tokens": stats.borrowed_tokens,
        "tasks_waiting": stats.tasks_waiting,
    }


def _loop() -> dict[str, Any]:
    return {"ident": threading.get_ident(), "loop": loop_name(), "limiter": _limiter()}


@app.get("/_where/def", include_in_schema=False)
def where_def(hold_ms: int = Query(0, ge=0, le=2000)) -> dict[str, Any]:
    """A `def` endpoint: FastAPI runs it in anyio's threadpool."""
    # Only a thread anyio started for the loop can call back into it.
    on_loop = anyio.from_thread.run_sync(_loop)
    time.sleep(hold_ms / 1000)
    current = threading.current_thread()
    return {
        "thread": current.name,
        "ident": threading.get_ident(),
        "main": current is threading.main_thread(),
        "loop_ident": on_loop["ident"],
        "loop": on_loop["loop"],
        "limiter": on_loop["limiter"],
    }


@app.get("/_where/async", include_in_schema=False)
async def where_async() -> dict[str, Any]:
    """An `async def` endpoint: it runs on the event loop's thread."""
    current = threading.current_thread()
    return {
        "thread": current.name,
        "ident": threading.get_ident(),
        "main": current is threading.main_thread(),
        **_loop(),
    }
