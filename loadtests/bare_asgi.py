"""A bare ASGI app for `loadtests.calibrate`: no framework, no routing, the same 200 for anything.

Served with `--lifespan off`, so it only ever sees HTTP scopes; it never reads the request body
(the calibration client sends none).
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]

BODY = b"hello"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Answer `hello` to every HTTP request."""
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
