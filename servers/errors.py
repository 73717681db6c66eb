"""OpenAI's error envelope, and how upstream failures map onto it, for every app."""

import json
from collections.abc import Mapping
from typing import Any

import httpx
import httpx2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from servers.sse import sse_data

# Transport failures of either client library (aiohttp's are mapped onto httpx's).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError)


class ProxyError(Exception):
    """An error the proxy answers with, in OpenAI's envelope."""

    def __init__(
        self,
        status_code: int,
        message: str,
        type: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body: `{"error": {"message", "type", "param", "code"}}`."""
        return error_body(self.message, self.type, self.code, self.param)


def error_body(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _upstream_message(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return None


def from_upstream_status(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """Map an upstream error response: 429 stays 429 (with Retry-After), 5xx becomes 502."""
    message = _upstream_message(body)
    if status == 429:
        retry = {"Retry-After": headers["retry-after"]} if "retry-after" in headers else {}
        return ProxyError(
            429,
            message or "upstream rate limit",
            "rate_limit_error",
            "rate_limit_exceeded",
            None,
            retry,
        )
    if status >= 500:
        return ProxyError(
            502,
            f"upstream answered {status}: {message or 'no message'}",
            "server_error",
            "bad_gateway",
        )
    # Client errors (bad model name, bad request) are the caller's to fix: pass them through.
    return ProxyError(status, message or f"upstream answered {status}", "invalid_request_error")


def from_transport_error(exc: Exception) -> ProxyError:
    """Map a failure to talk to the upstream: a timeout is 504, anything else 502."""
    if isinstance(exc, httpx.PoolTimeout | httpx2.PoolTimeout):
        return ProxyError(
            504,
            "timed out waiting for a free upstream connection",
            "server_error",
            "pool_timeout",
        )
    if isinstance(exc, httpx.TimeoutException | httpx2.TimeoutException):
        return ProxyError(504, f"upstream timed out: {exc!r}", "server_error", "upstream_timeout")
    return ProxyError(502, f"upstream connection failed: {exc!r}", "server_error", "bad_gateway")


def sse_error(exc: Exception) -> bytes:
    """The event sent when the upstream fails mid-stream, after the 200 status has gone out."""
    return sse_data(from_transport_error(exc).body())


def _render(error: ProxyError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


async def _proxy_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProxyError)
    return _render(exc)


async def _transport_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TRANSPORT_ERRORS)
    return _render(from_transport_error(exc))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return _render(ProxyError(exc.status_code, str(exc.detail), kind, headers=exc.headers))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    message = f"{first.get('msg', 'invalid request')} ({param})" if param else "invalid request"
    return _render(ProxyError(400, message, "invalid_request_error", "invalid_value", param))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's envelope, identically in all apps."""
    app.add_exception_handler(ProxyError, _proxy_error)
    for error in TRANSPORT_ERRORS:
        app.add_exception_handler(error, _transport_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
