"""OpenAI's error envelope, and how upstream and database failures map onto it, for every app.

No answer carries the upstream's URL, an exception's text or a stack trace: transport failures
are named by their class, an upstream 5xx by its status only (its body may hold a trace), and
anything unexpected is a bare 500 in the envelope. An upstream 4xx in OpenAI's envelope is the
caller's to fix, so it is relayed as it came (status, message, type, param, code).
"""

import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
import httpx2
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from servers.schemas import OPENAI_RULE, ErrorResponse
from servers.sse import sse_data
from servers.validation import PARSE_ERROR

_log = logging.getLogger(__name__)

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


class BodyTooLarge(HTTPException):
    """Raised while a request body is read, once it passes `max_body_bytes`.

    An `HTTPException`, because FastAPI turns anything else raised while it reads a body into
    a 400 "There was an error parsing the body".
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413)
        self.limit = limit


def body_too_large(limit: int) -> ProxyError:
    """The 413 of a body over `max_body_bytes`."""
    message = f"Request body too large: the limit is {limit} bytes."
    return ProxyError(413, message, "invalid_request_error", "request_too_large")


def error_body(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _upstream_error(body: bytes) -> ErrorResponse | None:
    try:
        return ErrorResponse.model_validate_json(body)
    except ValidationError:
        return None


def _upstream_message(body: bytes) -> str | None:
    """`error.message` of an upstream body, even one that is not a whole envelope."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return None


def from_upstream_status(status: int, headers: Mapping[str, str], body: bytes) -> ProxyError:
    """Map an upstream error response: 429 stays 429 (with Retry-After), 5xx becomes 502, and
    any other status is relayed with the upstream's envelope unchanged."""
    if status == 429:
        message = _upstream_message(body)
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
        return ProxyError(502, f"upstream answered {status}", "server_error", "bad_gateway")
    # Client errors (bad model name, bad request) are the caller's to fix: pass them through.
    envelope = _upstream_error(body)
    if envelope is None:
        return ProxyError(status, f"upstream answered {status}", "invalid_request_error")
    error = envelope.error
    return ProxyError(status, error.message, error.type, error.code, error.param)


def from_transport_error(exc: Exception) -> ProxyError:
    """Map a failure to talk to the upstream: a timeout is 504, anything else 502."""
    if isinstance(exc, httpx.PoolTimeout | httpx2.PoolTimeout):
        return ProxyError(
            504,
            "timed out waiting for a free upstream connection",
            "server_error",
            "pool_timeout",
        )
    # The class only: an exception's text may name the upstream's host (aiohttp's do).
    name = type(exc).__name__
    if _timed_out(exc):
        return ProxyError(504, f"upstream timed out ({name})", "server_error", "upstream_timeout")
    return ProxyError(502, f"upstream connection failed ({name})", "server_error", "bad_gateway")


def _timed_out(exc: Exception) -> bool:
    """A timeout, but not one httpx-aiohttp made up: it reports every aiohttp connection error
    (refused, reset, disconnected) as `httpx.ConnectTimeout`, caused by a non-timeout error."""
    if not isinstance(exc, httpx.TimeoutException | httpx2.TimeoutException):
        return False
    cause = exc.__cause__
    return not (isinstance(cause, aiohttp.ClientError) and not isinstance(cause, TimeoutError))


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
    if isinstance(exc, BodyTooLarge):
        return _render(body_too_large(exc.limit))
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return _render(ProxyError(exc.status_code, str(exc.detail), kind, headers=exc.headers))


def param_of(loc: tuple[int | str, ...]) -> str | None:
    """OpenAI's name of a field from pydantic's location: `("body", "messages", 0, "role")` is
    `messages[0].role`; the source (`body`, `query`, `path`) is dropped."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc
    param = ""
    for part in parts:
        param += f"[{part}]" if isinstance(part, int) else f".{part}" if param else str(part)
    return param or None


def from_validation_errors(errors: list[Any]) -> ProxyError:
    """A 400 for the first problem of a request: OpenAI's rules carry their own `param` and
    `code`; pydantic's are named after the field; a body that is not JSON gets OpenAI's text."""
    first = errors[0] if errors else {}
    kind, ctx = first.get("type"), first.get("ctx") or {}
    if kind == OPENAI_RULE:
        return ProxyError(
            400, first["msg"], "invalid_request_error", ctx.get("code"), ctx.get("param")
        )
    if kind == "json_invalid" or (kind == "missing" and tuple(first.get("loc", ())) == ("body",)):
        return ProxyError(400, PARSE_ERROR, "invalid_request_error")
    param = param_of(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request"))
    text = f"Invalid '{param}': {message}." if param else f"Invalid request body: {message}."
    return ProxyError(400, text, "invalid_request_error", "invalid_value", param)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _render(from_validation_errors(list(exc.errors())))


async def _db_pool_timeout(_request: Request, exc: Exception) -> JSONResponse:
    """No database connection came free within `db_pool_timeout_s` (SQLAlchemy's QueuePool)."""
    _log.warning("503 db_pool_timeout: %s", exc)  # the server's log keeps SQLAlchemy's words
    return _render(
        ProxyError(
            503,
            "timed out waiting for a free database connection",
            "server_error",
            "db_pool_timeout",
        )
    )


async def _db_operational(_request: Request, exc: Exception) -> JSONResponse:
    """SQLite's lock wait (`db_busy_timeout_ms`) ran out: busy, try again; else a 500."""
    assert isinstance(exc, sqlalchemy.exc.OperationalError)
    if "locked" in str(exc.orig) or "busy" in str(exc.orig):
        _log.warning("503 db_locked: %s", exc.orig)
        return _render(
            ProxyError(503, "the database is busy, try again", "server_error", "db_locked")
        )
    return await _internal_error(_request, exc)


async def _internal_error(_request: Request, _exc: Exception) -> JSONResponse:
    """Anything unexpected: a 500 in the envelope, without the exception's text or trace."""
    return _render(ProxyError(500, "internal server error", "server_error", "internal_error"))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's envelope, identically in all apps."""
    app.add_exception_handler(ProxyError, _proxy_error)
    for error in TRANSPORT_ERRORS:
        app.add_exception_handler(error, _transport_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sqlalchemy.exc.TimeoutError, _db_pool_timeout)
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _db_operational)
    app.add_exception_handler(Exception, _internal_error)
