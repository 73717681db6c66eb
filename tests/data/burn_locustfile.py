"""A locustfile whose users spend 2 ms of CPU before each request: a load generator that cannot
keep up with a high `--rate` while its users are free (tests/test_rate_mode.py)."""

import time

from locust import FastHttpUser, task

from loadtests.locustfiles.common import back_to_back, expect, tracked

BURN_S = 0.002


class BurnUser(FastHttpUser):
    """GET /hello after burning BURN_S of CPU."""

    @task
    @back_to_back
    def hello(self) -> None:
        """One /hello, late by the burn."""
        end = time.perf_counter() + BURN_S
        while time.perf_counter() < end:
            pass
        with tracked("GET /hello"), self.client.get("/hello", catch_response=True) as r:
            expect(r, 200, lambda body: body == {"message": "hello"})
