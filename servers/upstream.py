"""The mock OpenAI-compatible upstream: a lean Starlette app, since it shares a core with Locust."""

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from servers import mock
from servers.errors import error_body
from servers.settings import get_settings
from servers.sse import DONE, MEDIA_TYPE, sse_data
from servers.streaming import ClosingStreamingResponse
from servers.validation import PARSE_ERROR

_ids = itertools.count(1)


class MockAbort(Exception):
    """Raised inside a response body to cut the connection mid-response."""


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.settings = get_settings()
    app.state.rng = random.Random(app.state.settings.mock_seed)
    app.state.stats = mock.ServedStats()
    yield


def _error(
    status: int,
    message: str,
    type: str,
    code: str | None,
    headers: dict | None = None,
    param: str | None = None,
) -> Response:
    body = error_body(message, type, code, param)
    return JSONResponse(body, status_code=status, headers=headers)


async def health(request: Request) -> Response:
    """Liveness."""
    return JSONResponse({"status": "ok"})


async def list_models(request: Request) -> Response:
    """The one mock model."""
    return JSONResponse(mock.models(int(time.time())))


async def stats(request: Request) -> Response:
    """Served vs configured latency and open streams, since the mock started (`ServedStats`)."""
    return JSONResponse(request.app.state.stats.to_dict())


async def _stream(
    plan: mock.Plan, completion_id: str, created: int, stats: mock.ServedStats, started: float
) -> AsyncGenerator[bytes, None]:
    # A stream is open from its first step to its end, abort or disconnect included.
    stats.open_streams += 1
    try:
        ttft_s = 0.0
        for i, delay in enumerate(plan.delays):
            if plan.fault == "abort" and i == plan.tokens // 2:
                raise MockAbort("mock fault: stream aborted")
            await asyncio.sleep(delay)
            event = sse_data(
                mock.chunk(plan, completion_id, created, mock.token_delta(i, plan.token_chars))
            )
            yield event
            stats.streamed_bytes += len(event)  # resumed: the server has taken it
            if i == 0:  # resumed: the server has taken the first token
                ttft_s = time.perf_counter() - started
        yield sse_data(mock.chunk(plan, completion_id, created, {}, plan.finish_reason))
        if plan.include_usage:
            yield sse_data(mock.usage_chunk(plan, completion_id, created))
        yield DONE
        if plan.fault == "none":
            stats.record(time.perf_counter() - started, plan.configured_s, ttft_s)
    finally:
        stats.open_streams -= 1


async def _aborted_body(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise MockAbort("mock fault: response aborted")


async def chat_completions(request: Request) -> Response:
    """A chat completion after the latency model's delays; faults when asked for."""
    started = time.perf_counter()
    settings = request.app.state.settings
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _error(400, PARSE_ERROR, "invalid_request_error", None)
    try:
        plan = mock.plan_request(settings, request.headers, body, request.app.state.rng)
    except mock.BadRequest as exc:
        return _error(400, exc.message, "invalid_request_error", exc.code, param=exc.param)
    if plan.fault == "429":
        retry = {"Retry-After": str(settings.mock_retry_after_s)}
        return _error(
            429, "mock fault: rate limited", "rate_limit_error", "rate_limit_exceeded", retry
        )
    if plan.fault in ("500", "503"):
        return _error(int(plan.fault), "mock fault: server error", "server_error", "mock_fault")
    if plan.fault == "stall":
        await asyncio.sleep(settings.mock_stall_s)
    completion_id = f"chatcmpl-mock-{next(_ids)}"
    created = int(time.time())
    stats = request.app.state.stats
    if body.get("stream"):
        body_iterator = _stream(plan, completion_id, created, stats, started)
        return ClosingStreamingResponse(body_iterator, media_type=MEDIA_TYPE)
    await asyncio.sleep(plan.configured_s)
    content = json.dumps(
        mock.completion(plan, completion_id, created), separators=(",", ":")
    ).encode()
    if plan.fault == "abort":
        return StreamingResponse(_aborted_body(content), media_type="application/json")
    if plan.fault == "none":
        served_s = time.perf_counter() - started
        stats.record(served_s, plan.configured_s, served_s)
    return Response(content, media_type="application/json")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/v1/models", list_models),
        Route("/stats", stats),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ],
    lifespan=lifespan,
)
