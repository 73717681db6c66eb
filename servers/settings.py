"""Every knob of the servers and the mock upstream, read once from `LAB_*` environment variables."""

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Fault = Literal["none", "429", "500", "503", "stall", "abort"]


class Settings(BaseSettings):
    """Settings shared by the three proxy apps and the mock upstream."""

    model_config = SettingsConfigDict(env_prefix="LAB_", env_file=".env", extra="ignore")

    # Proxy -> upstream. Defaults are httpx's own so the lab measures what users get out of the box.
    upstream_url: str = "http://127.0.0.1:8001/v1"
    upstream_api_key: str = ""
    # httpx2 is the maintained fork of httpx (httpcore2's pool lock is re-entrant); aiohttp is
    # async only (through the `async` app's transport).
    http_client: Literal["httpx", "httpx2", "aiohttp"] = "httpx"
    http_timeout_s: float = Field(5.0, gt=0)
    http_max_connections: int = Field(100, ge=1)
    http_max_keepalive: int = Field(20, ge=0)
    # FastAPI's `Depends(..., max_concurrency=N)` on the chat route: at most N requests at once,
    # streams counted until their last byte; the others wait without a thread.
    http_max_concurrency: int | None = Field(None, ge=1)
    # Who closes a streamed upstream response: the relay generator's `finally` (Starlette never
    # closes a sync generator whose client left, so the garbage collector does, at any time, in
    # any thread), or the response object itself, however the stream ends.
    stream_close: Literal["generator", "response"] = "generator"

    # The largest request body any route reads (FastAPI's `max_body_size`): beyond it, 413 in
    # OpenAI's envelope, before the rest is read (a `Content-Length` over it is refused before
    # any of it is read).
    max_body_bytes: int = Field(1024 * 1024, ge=0)
    # What happens to the rest of a refused body (nginx's lingering close): once the 413 is
    # written, up to `body_drain_bytes` more are read and thrown away, for at most
    # `body_drain_s`, and then the connection is closed. A client that sends its whole body
    # before it reads (urllib) reads the 413 instead of a reset when its body fits.
    body_drain_bytes: int = Field(16 * 1024 * 1024, ge=0)
    body_drain_s: float = Field(2.0, ge=0)

    # anyio's default limiter is what runs every `def` endpoint and sync dependency.
    threadpool_tokens: int = Field(40, ge=1)
    # fastapi-overflow's patch: a `def` endpoint's response validation runs on 5 reserved threads
    # instead of the shared tokens (a published workaround for fastapi#3205 / #12066).
    fastapi_overflow: bool = False

    # The lab's own instrumentation: the /metrics monitor, Server-Timing and the timing hooks on
    # the HTTP client and the engine. Off measures what observing costs (the observer effect).
    observe: bool = True

    # A fix arm (servers/disconnect.py): when a client leaves before its response is complete,
    # cancel the request's work as far as its style allows. `async def`: the handler is
    # cancelled. `def`: a request still waiting for a thread never starts, and a running
    # thread's upstream read is ended (its socket shut down), but the thread runs to its end and
    # its result is discarded. `blocking`: nothing can hear the client while the loop is blocked.
    cancel_on_disconnect: bool = False

    # Database: SQLite at `db_path` (embedded, the default), or PostgreSQL at `db_url`
    # (`postgresql://user@host:port/db`; `make bench-pg` starts its own cluster). On PostgreSQL
    # `sync` and `blocking` use psycopg's sync API and `async` psycopg's async API or asyncpg.
    db_path: Path = Path(tempfile.gettempdir()) / "sync-async-lab.sqlite3"
    db_url: str = Field("", pattern=r"^(postgresql://.*)?$")
    db_async_driver: Literal["psycopg", "asyncpg"] = "psycopg"
    # SQLAlchemy's QueuePool defaults.
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout_s: float = Field(30.0, gt=0)
    db_busy_timeout_ms: int = Field(5000, ge=0)
    db_seed_rows: int = Field(10_000, ge=0)
    db_reset: bool = False
    # How long a request holds its session: `request` (a `yield` dependency, FastAPI's default:
    # until the response is sent), `function` (`Depends(scope="function")`: until the endpoint
    # and its response validation are done) or `statement` (opened and closed around each
    # statement, inside the endpoint: no `yield` dependency holds a connection).
    db_session: Literal["request", "function", "statement"] = "request"
    # FastAPI's `Depends(..., max_concurrency=N)` on the session dependency.
    db_max_concurrency: int | None = Field(None, ge=1)

    # Mock upstream latency model; requests may override through `x-mock-*` headers.
    mock_ttft_ms: float = Field(50.0, ge=0)
    mock_itl_ms: float = Field(10.0, ge=0)
    mock_output_tokens: int = Field(16, ge=1)
    mock_jitter: float = Field(0.0, ge=0, le=1)
    mock_seed: int | None = None
    mock_fault: Fault = "none"
    mock_fault_rate: float = Field(0.0, ge=0, le=1)
    mock_stall_s: float = Field(300.0, ge=0)
    mock_retry_after_s: int = Field(1, ge=0)


def get_settings() -> Settings:
    """Read the settings from the environment (a fresh read, so tests can monkeypatch env)."""
    return Settings()
