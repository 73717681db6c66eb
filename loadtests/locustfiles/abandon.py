"""`chat_abandon`: non-streamed chat completions whose users give up before the upstream answers.

What a request costs once its client has gone (issue 21; README "Failure behaviour"). Each user
sends the `chat` scenario's request and gives up after GIVE_UP_SHARE of the upstream's
configured latency (the run's `--ttft-ms`, `--itl-ms` and `--max-tokens`), or at the run's
`--request-timeout` if that comes first: geventhttpclient's timeout fires, it closes the
connection (the server hears its client leave) and the user sends its next request at once.
Such a request's outcome is `timeout`; an answer that comes in time is `ok`.

The cost is what the server did for the requests whose client had gone, seen from outside it
(loadtests/matrices/abandon.toml runs it with `items_wait` and the `cancel_on_disconnect` arm):

- upstream calls: cell.json `upstream_stats.requests`, what the mock served over the cell (it
  finishes a non-streamed request whose caller hung up, so this counts the calls started);
- upstream connections held: metrics.csv `lab_http_pool_connections{state="active"}`;
- database queries (`items_wait`, its users giving up at the matrix's `request_timeout_s`):
  metrics.csv `lab_db_statements_total`.

Set against the requests sent (requests.csv) and answered (`ok`), the rest was spent on clients
that had gone.
"""

from typing import Any

from locust import FastHttpUser, task
from locust.env import Environment

from loadtests.locustfiles.chat import LABEL, PATH, _is_completion, chat_body, mock_headers
from loadtests.locustfiles.common import back_to_back, expect, tracked

# A user gives up after this share of the upstream's configured latency.
GIVE_UP_SHARE = 0.5


def give_up_s(opts: Any) -> float:
    """Seconds a user waits for its answer: GIVE_UP_SHARE of the upstream's latency, at most
    the run's request timeout."""
    latency_s = (opts.ttft_ms + opts.itl_ms * (opts.max_tokens - 1)) / 1000
    return min(opts.request_timeout, GIVE_UP_SHARE * latency_s)


class AbandonChatUser(FastHttpUser):
    """Non-streamed chat completions back to back, each given up before the upstream answers."""

    def __init__(self, environment: Environment) -> None:
        opts = environment.parsed_options
        if opts is not None:
            # Read by FastHttpUser.__init__ when it makes the client; the class's own timeout
            # (the run's request timeout, set at init by common.py) stays for the others.
            self.network_timeout = self.connection_timeout = give_up_s(opts)
        super().__init__(environment)

    @task
    @back_to_back
    def chat(self) -> None:
        """One completion, most likely given up."""
        opts = self.environment.parsed_options
        with (
            tracked(LABEL),
            self.client.post(
                PATH,
                json=chat_body(opts.max_tokens, stream=False),
                headers=mock_headers(opts),
                catch_response=True,
            ) as r,
        ):
            expect(r, 200, lambda body: _is_completion(body, opts.max_tokens))
