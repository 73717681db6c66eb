"""`sync-async-lab probe`: one route of a user's app, and the lab's light ping beside it.

The route's requests come from a JSON file (`--probe-requests`, written by the probe from the
app's OpenAPI document and `--requests`): each `{"label", "method", "path", "query", "json",
"headers", "weight", "ok"}`, `path` already filled in and `ok` the statuses the route answered
when the probe tried it alone. Any other status, or a connection error, is an `error`. The body
is not checked: the probe does not know what the user's route should answer.
"""

import json
import random
import time
from functools import cache
from typing import Any
from urllib.parse import urlencode

import gevent
from locust import FastHttpUser, task

from loadtests.locustfiles.common import back_to_back, fail, tracked

# The lab's own light route, answered on the event loop by probe/instrument.py.
PING = "/__lab/ping"


@cache
def requests_of(path: str) -> tuple[list[dict[str, Any]], list[float]]:
    """The route's requests and their weights, read once per process."""
    with open(path) as f:
        requests = json.load(f)
    if not requests:
        raise SystemExit(f"{path}: no request to send")
    return requests, [float(r.get("weight", 1)) for r in requests]


class RouteUser(FastHttpUser):
    """Calls the probed route back to back (or on the rate schedule), one request at a time."""

    @task
    @back_to_back
    def call(self) -> None:
        """One request of the route, chosen by weight."""
        requests, weights = requests_of(self.environment.parsed_options.probe_requests)
        request = random.choices(requests, weights)[0]
        url = request["path"]
        if request.get("query"):
            url = f"{url}?{urlencode(request['query'], doseq=True)}"
        with (
            tracked(request["label"]),
            self.client.request(
                request["method"],
                url,
                name=request["label"],
                json=request.get("json"),
                headers=request.get("headers") or None,
                catch_response=True,
            ) as response,
        ):
            if response.status_code in request["ok"]:
                response.success()
            else:
                text = (response.text or "")[:200] if response.status_code else str(response.error)
                fail(response, f"status {response.status_code}: {text}")


class PingUser(FastHttpUser):
    """One user calling the lab's ping ten times a second; its rows are kind `probe`."""

    fixed_count = 1
    # Rate mode: the ping keeps its own pace; only the route's users follow the schedule.
    open_loop = False
    interval_s = 0.1

    def context(self) -> dict[str, Any]:
        """Tag this user's requests so the summary keeps them apart."""
        return {"kind": "probe"}

    @task
    @back_to_back
    def ping(self) -> None:
        """One ping, then sleep out the rest of the interval."""
        start = time.perf_counter()
        with tracked(f"GET {PING}", kind="probe"), self.client.get(PING, catch_response=True) as r:
            if r.status_code == 200:
                r.success()
            else:
                fail(r, f"status {r.status_code}")
        gevent.sleep(max(0.0, self.interval_s - (time.perf_counter() - start)))
