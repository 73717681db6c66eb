"""What the three proxy apps share about talking to the upstream: pure request building."""

from collections.abc import Mapping
from typing import Any

import httpx

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
    429: {"model": ErrorResponse, "description": "Upstream rate limit, with its Retry-After."},
    502: {"model": ErrorResponse, "description": "Upstream unreachable or failed."},
    504: {"model": ErrorResponse, "description": "Upstream timed out."},
}


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments for `httpx.Client` and `httpx.AsyncClient` alike."""
    headers = (
        {"authorization": f"Bearer {settings.upstream_api_key}"}
        if settings.upstream_api_key
        else {}
    )
    return {
        "base_url": settings.upstream_url,
        "headers": headers,
        "timeout": httpx.Timeout(settings.http_timeout_s),
        "limits": httpx.Limits(
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
