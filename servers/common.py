"""App construction shared by the three handler styles."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

import anyio
import anyio.to_thread
import fastapi.routing
import fastapi_overflow
from fastapi import FastAPI, Path, Query
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servers import disconnect
from servers.db import MAX_INTEGER
from servers.errors import BodyTooLarge, body_too_large, install_error_handlers
from servers.metrics import new_registry, observe, statements_counted
from servers.schemas import ErrorResponse
from servers.settings import Settings, get_settings
from servers.timing import ServerTimingMiddleware

TITLE = "sync-async lab"

# `GET /items/{item_id}`'s other answer.
ITEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No item with that id."}
}
# What every route documents instead of FastAPI's 422: the apps answer 400 (`errors`).
INVALID_REQUEST = {
    "description": "Invalid request, in OpenAI's error envelope (`param` names the field).",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}

# The items routes' parameters, bounded so every value reaching SQLite fits its integers.
ItemId = Annotated[int, Path(ge=1, le=MAX_INTEGER)]
PageLimit = Annotated[int, Query(ge=1, le=100)]
PageOffset = Annotated[int, Query(ge=0, le=MAX_INTEGER)]
# How long the item query waits in the database first (`pg_sleep`): the waiting-query scenario.
WaitMs = Annotated[int, Query(ge=0, le=1000)]
# A refused body's drain (`BodyLimitMiddleware`), as `Settings.body_drain_bytes` and `_s` default.
DRAIN_BYTES = Settings.model_fields["body_drain_bytes"].default
DRAIN_S = Settings.model_fields["body_drain_s"].default


# FastAPI's own, kept to undo fastapi-overflow's process-wide patch when an app runs without it.
_SERIALIZE_RESPONSE = fastapi.routing.serialize_response


def configure_threadpool(settings: Settings) -> None:
    """Size anyio's default limiter: the pool that runs `def` endpoints and sync dependencies.

    With `fastapi_overflow`, apply that package's patch (a `def` endpoint's response validation
    runs on reserved threads); without it, make sure FastAPI's own function is in place.
    """
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_tokens
    if settings.fastapi_overflow:
        fastapi_overflow.patch()
    else:
        fastapi.routing.serialize_response = _SERIALIZE_RESPONSE


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """`GET /metrics`, the same `async def` in every app, so a scrape never waits for a thread."""

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


async def ready(_request: Request) -> Response:
    """`GET /ready`, the same `async def` in every app: it needs no thread and touches nothing.

    Unlike `/health` (a `def` in `sync`), it answers while every threadpool token is taken, so a
    harness can tell a saturated server (ready answers, `/health` waits) from a dead one.
    """
    return JSONResponse({"status": "ready"})


class BodyLimitMiddleware:
    """A 413 in OpenAI's envelope for a request body over `max_bytes`, before it is all read.

    A `Content-Length` over the limit is answered at once, before any of the body is read; a
    body that comes in chunks (or runs past a lying length) is counted as the app reads it, and
    the read that passes the limit raises `errors.BodyTooLarge` instead of handing the app more:
    what is buffered never exceeds the limit by more than one chunk. Hand-written because the
    limit FastAPI and Starlette offer (`max_body_size`) answers a `Content-Length` over it with
    its own plain-text 413, replacing whatever the app answers, so the envelope cannot come
    through.

    After a refusal the rest of the body is drained, as nginx's lingering close does: the 413
    goes out whole (its last body message sent with `more_body`, so the server writes it but
    does not end the response), then up to `drain_bytes` more are read and thrown away, for at
    most `drain_s`, and only then is the response ended, with `Connection: close`. Without the
    drain a client that sends all of its body before it reads (urllib sends `Connection:
    close`, and uvicorn closes as soon as the response ends) had its connection reset with the
    body unread, and the reset could destroy the 413 before the client read it. The drain must
    come before the response ends: both of uvicorn's protocols (httptools and h11) answer every
    `receive()` after the end of the response with `http.disconnect` and drop the rest of the
    body (tests/test_bad_input.py has the measurements). A body longer than the drain is still
    cut off with a reset, as nginx's is after its `lingering_time`.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        drain_bytes: int = DRAIN_BYTES,
        drain_s: float = DRAIN_S,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes
        self.drain_s = drain_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = body_too_large(self.max_bytes)
            refusing = self._refusing(receive, send, lambda: False)
            await JSONResponse(error.body(), error.status_code)(scope, receive, refusing)
            return
        received = 0
        # The body passed the limit (then the answer is a refusal), and whether it had ended.
        over = ended = False

        async def limited() -> Message:
            nonlocal received, over, ended
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over, ended = True, not message.get("more_body", False)
                    raise BodyTooLarge(self.max_bytes)
            return message

        refusing = self._refusing(receive, send, lambda: ended)

        async def sending(message: Message) -> None:
            await (refusing if over else send)(message)

        await self.app(scope, limited, sending)

    def _refusing(self, receive: Receive, send: Send, ended: Callable[[], bool]) -> Send:
        """`send` for a refusal: `Connection: close` on its start, its last body message sent
        without ending the response, the rest of the request body drained, then the end."""

        async def refusing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                await send({**message, "headers": headers})
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await send({**message, "more_body": True})
                if not ended():
                    await drain(receive, self.drain_bytes, self.drain_s)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await send(message)

        return refusing


async def drain(receive: Receive, max_bytes: int, max_s: float) -> int:
    """Read and discard the request body until it ends, the client leaves, more than
    `max_bytes` were read or `max_s` passed; the number of bytes read."""
    drained = 0
    with anyio.move_on_after(max_s):
        while drained <= max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
    return drained


def document_errors(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, with each route's 422 (FastAPI's, never answered) documented as the 400
    the apps answer in OpenAI's envelope, so the document says what a client gets."""

    def openapi() -> dict[str, Any]:
        schema = FastAPI.openapi(app)
        for operations in schema["paths"].values():
            for operation in operations.values():
                if operation["responses"].pop("422", None) is not None:
                    operation["responses"].setdefault("400", INVALID_REQUEST)
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        return schema

    return openapi


def create_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> FastAPI:
    """A FastAPI app with the lab's title, errors, `/metrics`, `/ready` and Server-Timing.

    The app's lifespan must put its HTTP client and engine on `app.state.http` and
    `app.state.engine`; the instrumentation wraps it and reads them. `LAB_OBSERVE`,
    `LAB_MAX_BODY_BYTES` with `LAB_BODY_DRAIN_BYTES` and `LAB_BODY_DRAIN_S`
    (`BodyLimitMiddleware`) and `LAB_CANCEL_ON_DISCONNECT` (`disconnect`) are read here, when
    the app is created (middleware cannot be added once it runs). With `LAB_OBSERVE` false there
    is no Server-Timing middleware, no timing hooks, no monitor and no statement count, and
    `/metrics` serves only the process collector. With `LAB_CANCEL_ON_DISCONNECT` a request is
    cancelled when its client leaves, and a sync HTTP client's upstream reads can be ended from
    outside its thread. The handlers are the same either way.
    """
    settings = get_settings()
    observing = settings.observe
    cancelling = settings.cancel_on_disconnect

    @asynccontextmanager
    async def instrumented(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app), observe(app, enabled=observing):
            if cancelling:
                disconnect.install(app.state.http)
            if not observing:
                yield
                return
            engine = getattr(app.state.engine, "sync_engine", app.state.engine)
            with statements_counted(app.state.registry, engine):
                yield

    app = FastAPI(title=TITLE, lifespan=instrumented)
    install_error_handlers(app)
    app.openapi = document_errors(app)
    app.state.observe = observing
    app.state.registry = new_registry()
    app.add_route("/metrics", metrics_endpoint(app.state.registry), include_in_schema=False)
    app.add_route("/ready", ready, include_in_schema=False)
    if observing:
        app.add_middleware(ServerTimingMiddleware)
    if cancelling:
        app.add_middleware(disconnect.CancelOnDisconnectMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        drain_bytes=settings.body_drain_bytes,
        drain_s=settings.body_drain_s,
    )
    return app
