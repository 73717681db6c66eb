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
    http_client: Literal["httpx", "aiohttp"] = "httpx"
    http_timeout_s: float = Field(5.0, gt=0)
    http_max_connections: int = Field(100, ge=1)
    http_max_keepalive: int = Field(20, ge=0)

    # anyio's default limiter is what runs every `def` endpoint and sync dependency.
    threadpool_tokens: int = Field(40, ge=1)

    # The lab's own instrumentation: the /metrics monitor, Server-Timing and the timing hooks on
    # the HTTP client and the engine. Off measures what observing costs (the observer effect).
    observe: bool = True

    # Database: SQLAlchemy's QueuePool defaults.
    db_path: Path = Path(tempfile.gettempdir()) / "sync-async-lab.sqlite3"
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout_s: float = Field(30.0, gt=0)
    db_busy_timeout_ms: int = Field(5000, ge=0)
    db_seed_rows: int = Field(10_000, ge=0)
    db_reset: bool = False

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
