"""`mixed`: chat users plus one light /hello probe, to show what slow handlers do to others."""

import time
from typing import Any

import gevent
from locust import FastHttpUser, task

from loadtests.locustfiles.chat import ChatUser
from loadtests.locustfiles.common import back_to_back, expect, tracked


class HeavyChatUser(ChatUser):
    """The chat scenario's user, unchanged."""


class ProbeUser(FastHttpUser):
    """One user calling /hello ten times a second; its rows are recorded as kind `probe`."""

    fixed_count = 1
    # Rate mode: the probe keeps its own pace; only the chat users follow the schedule.
    open_loop = False
    # Paced, not back to back: the probe should measure the server, not load it.
    interval_s = 0.1

    def context(self) -> dict[str, Any]:
        """Tag this user's requests so the summary keeps them apart."""
        return {"kind": "probe"}

    @task
    @back_to_back
    def probe(self) -> None:
        """One /hello, then sleep out the rest of the interval (not in wait(): see back_to_back)."""
        start = time.perf_counter()
        with (
            tracked("GET /hello", kind="probe"),
            self.client.get("/hello", catch_response=True) as response,
        ):
            expect(response, 200, lambda body: body == {"message": "hello"})
        gevent.sleep(max(0.0, self.interval_s - (time.perf_counter() - start)))
