"""A bare ASGI server that answers a known number of requests, then holds the rest.

For the tests of the lab's method: `STUB_FAST` requests to `/hello` answer at once, every later
one is held for `STUB_HOLD_S` seconds (a stall the test knows the length of). `/ready` always
answers; `/count` says how many `/hello` requests arrived, so a test can check that every request
the load generator sent is in requests.csv.
"""

import asyncio
import json
import os
from typing import Any

FAST = int(os.environ.get("STUB_FAST", "20"))
HOLD_S = float(os.environ.get("STUB_HOLD_S", "60"))
received = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/hello`, `/ready` and `/count`."""
    global received
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hello":
        received += 1
        if received > FAST:
            await asyncio.sleep(HOLD_S)
        body = {"message": "hello"}
    elif path == "/count":
        body = {"received": received}
    else:
        body = {"status": "ready"}
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})
