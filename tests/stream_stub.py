"""A bare ASGI app with a stream that never ends: `/health` answers, `/stream` sends a chunk every
0.1 s until the client goes away. Under uvicorn, SIGTERM with a stream open does not stop it:
uvicorn waits for the open connection (no `--timeout-graceful-shutdown`)."""

import asyncio
from typing import Any

CHUNK_EVERY_S = 0.1


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/stream` (text/event-stream, endless) and anything else: 200 `ok`."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/stream":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    n = 0
    while True:
        n += 1
        await send(
            {"type": "http.response.body", "body": f"data: {n}\n\n".encode(), "more_body": True}
        )
        await asyncio.sleep(CHUNK_EVERY_S)
