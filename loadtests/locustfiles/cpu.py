"""`cpu`: pure-Python CPU work per request."""

from locust import FastHttpUser, task

from loadtests.locustfiles.common import back_to_back, expect, tracked


class CpuUser(FastHttpUser):
    """Calls GET /cpu?n=<cpu-ms> back to back."""

    @task
    @back_to_back
    def cpu(self) -> None:
        """One /cpu."""
        n = self.environment.parsed_options.cpu_ms
        with (
            tracked("GET /cpu"),
            self.client.get(f"/cpu?n={n}", name="/cpu", catch_response=True) as r,
        ):
            expect(r, 200, lambda body: body["n"] == n and isinstance(body["result"], int))
