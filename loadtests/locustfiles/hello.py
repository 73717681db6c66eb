"""`hello`: trivial JSON, no I/O: the framework's own overhead."""

from locust import FastHttpUser, task

from loadtests.locustfiles.common import back_to_back, expect, tracked


class HelloUser(FastHttpUser):
    """Calls GET /hello back to back."""

    @task
    @back_to_back
    def hello(self) -> None:
        """One /hello."""
        with tracked("GET /hello"), self.client.get("/hello", catch_response=True) as response:
            expect(response, 200, lambda body: body == {"message": "hello"})
