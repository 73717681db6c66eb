"""The mock upstream alone (for `python -m loadtests.upstream_capacity`)."""

from locust import FastHttpUser, task

from loadtests.locustfiles.chat import chat_body, mock_headers
from loadtests.locustfiles.common import back_to_back, expect, tracked


class UpstreamUser(FastHttpUser):
    """Non-streaming completions straight to the mock, back to back."""

    @task
    @back_to_back
    def complete(self) -> None:
        """One completion."""
        opts = self.environment.parsed_options
        with (
            tracked(),
            self.client.post(
                "/v1/chat/completions",
                json=chat_body(opts.max_tokens, stream=False),
                headers=mock_headers(opts),
                catch_response=True,
            ) as r,
        ):
            expect(r, 200, lambda body: body["object"] == "chat.completion")
