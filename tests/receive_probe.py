"""A bare ASGI app that asks uvicorn what `receive()` gives once a response is written.

Both routes answer a 413 at once, the request body unread, then call `receive()` and write what
they got to the file `PROBE_LOG` names (one JSON line per request):

* `/ended`: the response is ended first (its last body message without `more_body`); then up to
  5 `receive()` calls: what the app can still read of the body after the end.
* `/held`: the whole 413 is written, but its last body message has `more_body` (the response is
  not ended); the app reads the rest of the body, then ends the response.

`tests/test_bad_input.py` runs it under uvicorn's httptools and h11 protocols: the facts the
body limit's drain is built on (`servers/common.py` `BodyLimitMiddleware`).
"""

import json
import os
import time
from typing import Any

BODY = b'{"error":"too large"}'


def log(record: dict[str, Any]) -> None:
    with open(os.environ["PROBE_LOG"], "a") as f:
        f.write(json.dumps(record) + "\n")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    started = time.monotonic()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    held = scope["path"] == "/held"
    await send({"type": "http.response.body", "body": BODY, "more_body": held})
    messages, read = [], 0
    for _ in range(5 if not held else 10_000):
        message = await receive()
        messages.append(message["type"])
        read += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            break
    if held:
        await send({"type": "http.response.body", "body": b""})
    log(
        {
            "path": scope["path"],
            "first": messages[0],
            "receives": len(messages),
            "bytes": read,
            "s": round(time.monotonic() - started, 3),
        }
    )
