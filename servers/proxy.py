"""What the three proxy apps share about talking to the upstream: pure request building."""

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import httpx
import httpx2
from fastapi import Depends
from httpx_aiohttp import AiohttpTransport

from servers.schemas import ChatCompletionRequest, ErrorResponse
from servers.settings import Settings
from servers.sse import MEDIA_TYPE

CHAT_PATH = "chat/completions"

# Documents both answers of the route: JSON, or an event stream when `stream` is true.
CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": "A `chat.completion`, or `chat.completion.chunk` events when streaming.",
    },
    400: {"model": ErrorResponse, "description": "A body OpenAI would refuse (`param` names why)."},
    413: {"model": ErrorResponse, "description": "A body over `LAB_MAX_BODY_BYTES`."},
    429: {"model": ErrorResponse, "description": "Upstream rate limit, with its Retry-After."},
    502: {"model": ErrorResponse, "description": "Upstream unreachable or failed."},
    504: {"model": ErrorResponse, "description": "Upstream timed out."},
}


def http_module(settings: Settings, sync: bool = False) -> ModuleType:
    """The client library of `http_client`: `httpx2` (the fork) or `httpx` (aiohttp's base).

    Both have the same API, so the handlers call either without knowing which. aiohttp has no
    sync API: asking for it in a `sync` client (`sync=True`) is an error, not a silent httpx.
    """
    if sync and settings.http_client == "aiohttp":
        raise ValueError("LAB_HTTP_CLIENT=aiohttp needs the async app; use httpx or httpx2")
    return httpx2 if settings.http_client == "httpx2" else httpx


class AiohttpPoolTransport(AiohttpTransport):
    """httpx-aiohttp's transport, with one correction kept here: a timeout while the connector is
    full is httpx's `PoolTimeout`.

    The package hands httpx's pool timeout to aiohttp as its `connect` timeout (which counts the
    wait for a free connection) and reports every connect timeout as `httpx.ConnectTimeout`, so a
    full pool would answer 504 `upstream_timeout` in this arm only; with the correction, all
    clients answer it as 504 `pool_timeout`.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            connector = getattr(self.client, "connector", None)
            limit = getattr(connector, "limit", 0)
            if connector is not None and limit and len(connector._acquired) >= limit:
                raise httpx.PoolTimeout(f"aiohttp: {exc}", request=request) from exc
            raise


def aiohttp_transport(settings: Settings) -> AiohttpPoolTransport:
    """aiohttp under `httpx.AsyncClient`, from the `httpx-aiohttp` package (the transport the
    `openai` SDK documents): the `async` app's handlers stay the same, the bytes go over aiohttp's
    connector, limited to `http_max_connections` (aiohttp has no idle-connection count, so
    `http_max_keepalive` does not apply); httpx's pool timeout becomes aiohttp's connect timeout.
    """
    return AiohttpPoolTransport(limits=client_kwargs(settings)["limits"])


def admission(admit: Callable[[], Any], settings: Settings) -> list[Any]:
    """The chat route's extra dependencies: `admit` under FastAPI's `max_concurrency`, if set.

    `admit` is a `yield` dependency of the app's style that does nothing: with
    `http_max_concurrency = N`, at most N chat requests run at once, each counted until its
    response (stream included) is sent; the others wait without a thread. Unset, the route has
    no extra dependency and costs nothing.
    """
    limit = settings.http_max_concurrency
    return [Depends(admit, max_concurrency=limit)] if limit else []


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments for the sync and async clients of `http_module(settings)` alike."""
    http = http_module(settings)
    headers = (
        {"authorization": f"Bearer {settings.upstream_api_key}"}
        if settings.upstream_api_key
        else {}
    )
    return {
        "base_url": settings.upstream_url,
        "headers": headers,
        "timeout": http.Timeout(settings.http_timeout_s),
        "limits": http.Limits(
            max_connections=settings.http_max_connections,
            max_keepalive_connections=settings.http_max_keepalive,
        ),
    }


def forward_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's `x-mock-*` headers, so one mock upstream can serve every scenario."""
    return {k: v for k, v in headers.items() if k.lower().startswith("x-mock-")}


def upstream_payload(body: ChatCompletionRequest) -> dict[str, Any]:
    """The body sent upstream: what the caller sent, unknown OpenAI fields included."""
    return body.model_dump(exclude_unset=True)
