"""App construction shared by the three handler styles."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from servers.errors import install_error_handlers
from servers.metrics import new_registry, observe
from servers.settings import Settings
from servers.timing import ServerTimingMiddleware

TITLE = "sync-async lab"


def configure_threadpool(settings: Settings) -> None:
    """Size anyio's default limiter: the pool that runs `def` endpoints and sync dependencies."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_tokens


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """`GET /metrics`, the same `async def` in every app, so a scrape never waits for a thread."""

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def create_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> FastAPI:
    """A FastAPI app with the lab's title, OpenAI-style errors, `/metrics` and Server-Timing.

    The app's lifespan must put its HTTP client and engine on `app.state.http` and
    `app.state.engine`; the instrumentation wraps it and reads them.
    """

    @asynccontextmanager
    async def instrumented(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app), observe(app):
            yield

    app = FastAPI(title=TITLE, lifespan=instrumented)
    install_error_handlers(app)
    app.state.registry = new_registry()
    app.add_route("/metrics", metrics_endpoint(app.state.registry), include_in_schema=False)
    app.add_middleware(ServerTimingMiddleware)
    return app
