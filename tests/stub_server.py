"""A bare ASGI server that answers a known number of requests, then holds the rest.

For the tests of the lab's method: `STUB_FAST` requests to `/hello` answer at once, every later
one is held for `STUB_HOLD_S` seconds (a stall the test knows the length of). `/ready` always
answers; `/count` says how many `/hello` requests arrived, so a test can check that every request
the load generator sent is in requests.csv.

With `STUB_STALL_S`, the stall is one stretch of time instead: it starts with request
`STUB_FAST + 1` and lasts `STUB_STALL_S` seconds; every request that arrives in it is answered
when it ends, later ones at once. With `STUB_SERVICE_MS`, requests are served one at a time,
each taking that long: a server with a known service rate (1000 / STUB_SERVICE_MS per second).
"""

import asyncio
import json
import os
from typing import Any

FAST = int(os.environ.get("STUB_FAST", "20"))
HOLD_S = float(os.environ.get("STUB_HOLD_S", "60"))
STALL_S = float(os.environ.get("STUB_STALL_S", "0"))
SERVICE_MS = float(os.environ.get("STUB_SERVICE_MS", "0"))
received = 0
stall_ends: float | None = None
_one_at_a_time = asyncio.Lock()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/hello`, `/ready` and `/count`."""
    global received
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/hello":
        global stall_ends
        received += 1
        now = asyncio.get_running_loop().time()
        if SERVICE_MS:
            async with _one_at_a_time:
                await asyncio.sleep(SERVICE_MS / 1000)
        elif STALL_S:
            if received == FAST + 1:
                stall_ends = now + STALL_S
            if stall_ends is not None and now < stall_ends:
                await asyncio.sleep(stall_ends - now)
        elif received > FAST:
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
