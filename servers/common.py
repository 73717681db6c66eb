"""App construction shared by the three handler styles."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio.to_thread
from fastapi import FastAPI

from servers.errors import install_error_handlers
from servers.settings import Settings

TITLE = "sync-async lab"


def configure_threadpool(settings: Settings) -> None:
    """Size anyio's default limiter: the pool that runs `def` endpoints and sync dependencies."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threadpool_tokens


def create_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> FastAPI:
    """A FastAPI app with the lab's title and OpenAI-style error handling."""
    app = FastAPI(title=TITLE, lifespan=lifespan)
    install_error_handlers(app)
    return app
