"""App construction shared by the three handler styles."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
import fastapi.routing
import fastapi_overflow
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from servers.errors import install_error_handlers
from servers.metrics import new_registry, observe
from servers.settings import Settings, get_settings
from servers.timing import ServerTimingMiddleware

TITLE = "sync-async lab"


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


def create_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> FastAPI:
    """A FastAPI app with the lab's title, errors, `/metrics`, `/ready` and Server-Timing.

    The app's lifespan must put its HTTP client and engine on `app.state.http` and
    `app.state.engine`; the instrumentation wraps it and reads them. `LAB_OBSERVE` is read here,
    when the app is created (middleware cannot be added once it runs): when false, there is no
    Server-Timing middleware, no timing hooks and no monitor, and `/metrics` serves only the
    process collector. The handlers are the same either way.
    """
    observing = get_settings().observe

    @asynccontextmanager
    async def instrumented(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app), observe(app, enabled=observing):
            yield

    app = FastAPI(title=TITLE, lifespan=instrumented)
    install_error_handlers(app)
    app.state.observe = observing
    app.state.registry = new_registry()
    app.add_route("/metrics", metrics_endpoint(app.state.registry), include_in_schema=False)
    app.add_route("/ready", ready, include_in_schema=False)
    if observing:
        app.add_middleware(ServerTimingMiddleware)
    return app
