"""A client that leaves a stream: when does the proxy end its upstream stream, in every arm?

The mock upstream counts its open streams (`/stats` `open_streams`); the test leaves, then times
how long the count takes to return to zero. Tokens are `GAP_MS` apart, so the time tells:

- `async` (every client, either `LAB_STREAM_CLOSE`): at once. Starlette cancels the task
  awaiting the upstream, and the relay's `finally` closes the upstream response.
- `sync` with `LAB_STREAM_CLOSE=response`: at once. The relay's worker thread sits in a socket
  read no cancellation reaches; the closing response shuts the upstream socket down as it hears
  the client leave, so the read returns and the relay closes (`servers/streaming.py`).
- `sync` with the default `generator`: never. Starlette returns without closing a sync relay
  whose client left, so the proxy keeps its upstream stream (and its pool connection) until the
  upstream ends it or the garbage collector closes the relay: after `REPEATS` leaves, some
  connections are still checked out (encode/httpcore#990 is what that leads to).
- `blocking`, either close: never, until the upstream stream ends. Its relay reads the upstream
  on the event loop and a send that does not wait is no checkpoint, so the loop never runs the
  task that would hear the client leave; it reads (and discards) the whole upstream stream.
  Nothing in the process can hear the client while the only thread that could is blocked: this
  is what blocking inside `async def` means, not a bug a setting could fix.

The issue asks for "within 1 s in every variant": `async` and `sync` with the closing response
meet it; the others are tested for what they do, so a change in either direction shows.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import (
    CHAT,
    CLIENT_ARMS,
    live_mock,
    live_proxy,
    mock_stats,
    pool_active,
    wait_for,
)

pytestmark = pytest.mark.integration

GAP_MS = 2500  # between tokens (and before the first, when the client leaves before it)
TOKENS = 2
PROMPT_S = 1.0  # "at once": before the next token could end the stream by itself
REPEATS = 100

# Every client arm with the default close, and each variant with `LAB_STREAM_CLOSE=response`.
ARMS = [(v, c, "generator") for v, c in CLIENT_ARMS] + [
    (v, "httpx", "response") for v in ("sync", "async", "blocking")
]


def expected(variant: str, close: str) -> str:
    """When the arm ends its upstream stream after the client left (see the module doc)."""
    if variant == "async":
        return "at once"
    if variant == "sync" and close == "response":
        return "at once"
    return "never"


@pytest.fixture(scope="module")
def mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_mock(tmp_path_factory.mktemp("mock")) as url:
        yield url


@pytest.fixture(scope="module", params=[pytest.param(a, id="-".join(a)) for a in ARMS])
def arm(
    request: pytest.FixtureRequest, mock_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    variant, client, close = request.param
    env = {"LAB_HTTP_CLIENT": client, "LAB_STREAM_CLOSE": close, "LAB_HTTP_TIMEOUT_S": "30"}
    tmp: Path = tmp_path_factory.mktemp("-".join(request.param))
    with live_proxy(variant, mock_url, tmp, env) as url:
        yield variant, client, close, url


def open_streams(mock_url: str) -> int:
    return int(mock_stats(mock_url)["open_streams"])


def leave(url: str, headers: dict[str, str], read_first_token: bool) -> None:
    """Open a stream through the proxy, maybe read its first token, then hang up."""
    body: dict[str, Any] = {**CHAT, "stream": True, "max_tokens": TOKENS}
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200
            if read_first_token:
                lines = r.iter_lines()
                assert next(lines).startswith("data:")


WHEN = {
    # The client leaves while the proxy waits for the first token.
    "before-first-token": ({"x-mock-ttft-ms": str(GAP_MS), "x-mock-itl-ms": str(GAP_MS)}, False),
    # The client reads a token, then leaves while the proxy waits for the next one.
    "mid-stream": ({"x-mock-ttft-ms": "1", "x-mock-itl-ms": str(GAP_MS)}, True),
}
WHOLE_STREAM_S = TOKENS * GAP_MS / 1000


@pytest.mark.parametrize("when", list(WHEN))
def test_leaving_ends_the_upstream_stream(
    arm: tuple[str, str, str, str], mock_url: str, when: str
) -> None:
    variant, _, close, url = arm
    headers, read_first = WHEN[when]
    assert wait_for(lambda: open_streams(mock_url) == 0, WHOLE_STREAM_S + 2) is not None
    leave(url, headers, read_first)
    took = wait_for(lambda: open_streams(mock_url) == 0, PROMPT_S)
    expect = expected(variant, close)
    print(f"\ndisconnect {variant}/{close} {when}: upstream closed after {took} s ({expect})")
    if expect == "at once":
        assert took is not None and took < PROMPT_S
    else:
        assert took is None, "this arm now ends the upstream stream: update the module doc"
        # It ends when the upstream does: the next test starts from zero.
        assert wait_for(lambda: open_streams(mock_url) == 0, WHOLE_STREAM_S + 2) is not None


def test_many_leaves_leave_no_stream_or_connection_in_use(
    arm: tuple[str, str, str, str], mock_url: str
) -> None:
    variant, client, close, url = arm
    if (variant, client, close) == ("sync", "httpx", "generator"):
        pytest.skip(
            "deadlocks the server under httpcore's pool lock (encode/httpcore#990), as "
            "tests/test_stall_repro.py proves in a child process; README `def` stalls"
        )
    headers = {"x-mock-ttft-ms": "1", "x-mock-itl-ms": "30"}  # short streams: blocking reads each
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: leave(url, headers, True), range(REPEATS)))
    streams_closed = wait_for(lambda: open_streams(mock_url) == 0, 5)
    if variant == "sync" and close == "generator":
        # httpx2: the relays nobody closed hold their connections until the garbage collector
        # closes them (httpx2's pool does not deadlock on it). Only the upstream side is
        # asserted for this arm.
        assert streams_closed is not None
        return
    # The pool gauge is the peak of the last second: two windows with nothing in use.
    pool_back = wait_for(lambda: pool_active(url) == 0, 5, step=0.5)
    left = pool_active(url)
    print(f"\n{REPEATS} leaves {variant}/{close}: {left} upstream connections still in use")
    assert streams_closed is not None  # the upstream streams are short: they end anyway
    assert pool_back is not None
    # ... and the proxy still serves.
    reply = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "max_tokens": 2}, timeout=30)
    assert reply.status_code == 200
