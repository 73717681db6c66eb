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

import json
import socket
import time
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
from tests.slow_upstream import Call, slow_upstream

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


# A latency bound ("within 1 s"): run alone after the parallel tests (Makefile), where a machine
# loaded by three other test workers once held an async arm's cancellation for 1.49 s.
@pytest.mark.timing
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


# --- A client that leaves a non-streamed request (issue 21, `LAB_CANCEL_ON_DISCONNECT`) --------
#
# Two clients send a non-streamed chat completion through the proxy and hang up without reading:
# `first` after 0.6 s (its request is at the upstream when it leaves), `queued`, sent 0.1 s after
# it, after 0.2 s: `sync` runs with one threadpool token, so there `queued`'s client leaves while
# it waits for the thread `first` holds. The slow
# upstream (tests/slow_upstream.py) holds every request HOLD_S and records whether the proxy hung
# up first. What each arm does, as measured (servers/disconnect.py says why):
#
# - setting off, every style: nothing is cancelled; both run to their end (the upstream answers
#   clients that have gone), `queued` in `sync` after `first` has freed the thread.
# - on, `async`: both upstream requests are hung up on at once (the handlers are cancelled).
# - on, `sync`: `first`'s thread runs on, but its upstream read is ended at once (its socket shut
#   down); `queued` never starts (it was cancelled while it waited for a thread).
# - `blocking`, either way: `first` runs to its end, nothing in the process can hear its client
#   while the loop is blocked; `queued` is read after it, its client already gone, and runs too:
#   the loop reads its body before it processes the hang-up.

HOLD_S = 1.0
FIRST_LEAVES_S = 0.6
QUEUED_AFTER_S = 0.1
QUEUED_LEAVES_S = 0.2
PROMPT_LEAVE_S = 0.5  # "at once": the upstream saw the hang-up this soon after the client left
CANCEL_ARMS = [(v, c) for v in ("sync", "async", "blocking") for c in (False, True)]
# (first, queued): `abandoned` (the proxy hung up on it within PROMPT_LEAVE_S of its client
# leaving), `ran` (it got to the upstream and was not hung up on: answered, or still held when
# the test looks), `never` (it never got to the upstream).
LEFT_REQUESTS = {
    ("sync", False): ("ran", "ran"),
    ("sync", True): ("abandoned", "never"),
    ("async", False): ("ran", "ran"),
    ("async", True): ("abandoned", "abandoned"),
    ("blocking", False): ("ran", "ran"),
    ("blocking", True): ("ran", "ran"),
}


@pytest.fixture(scope="module")
def slow() -> Iterator[tuple[str, list[Call]]]:
    with slow_upstream(HOLD_S) as upstream:
        yield upstream


@pytest.fixture(
    scope="module",
    params=[pytest.param(a, id=f"{a[0]}-cancel-{'on' if a[1] else 'off'}") for a in CANCEL_ARMS],
)
def cancel_arm(
    request: pytest.FixtureRequest,
    slow: tuple[str, list[Call]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, bool, str]]:
    variant, cancel = request.param
    env = {
        "LAB_CANCEL_ON_DISCONNECT": "true" if cancel else "false",
        "LAB_HTTP_TIMEOUT_S": "30",
        "LAB_THREADPOOL_TOKENS": "1",  # `sync`: a second request waits for the first's thread
    }
    tmp: Path = tmp_path_factory.mktemp(f"{variant}-cancel-{cancel}")
    with live_proxy(variant, slow[0], tmp, env) as url:
        yield variant, cancel, url


def send_and_leave(url: str, wait_s: float, leave_after_s: float) -> float:
    """Wait, send a non-streamed chat completion, hang up `leave_after_s` later without reading
    a byte; when it hung up (time.monotonic())."""
    time.sleep(wait_s)
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({**CHAT, "max_tokens": 1}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        time.sleep(leave_after_s)
    return time.monotonic()


def fate(call: Call | None, left_at: float) -> str:
    """What became of one upstream request (see LEFT_REQUESTS)."""
    if call is None:
        return "never"
    if call.abandoned_after_s is not None:
        if call.arrived + call.abandoned_after_s - left_at < PROMPT_LEAVE_S:
            return "abandoned"
    return "ran"


def test_leaving_a_non_streamed_request(
    cancel_arm: tuple[str, bool, str], slow: tuple[str, list[Call]]
) -> None:
    variant, cancel, url = cancel_arm
    calls = slow[1]
    before = len(calls)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(send_and_leave, url, 0.0, FIRST_LEAVES_S)
        queued = pool.submit(send_and_leave, url, QUEUED_AFTER_S, QUEUED_LEAVES_S)
        left = [first.result(), queued.result()]
    mine = calls[before:]
    # The first request ends, answered or hung up on; a queued one has time to get there after.
    ended = wait_for(lambda: mine[0].served or mine[0].abandoned_after_s is not None, HOLD_S + 2)
    assert ended is not None, "the upstream never saw the first request end"
    time.sleep(0.3)
    mine = sorted(calls[before:], key=lambda c: c.arrived)
    fates = tuple(fate(mine[i] if i < len(mine) else None, left[i]) for i in range(2))
    print(
        f"\nleft non-streamed {variant} cancel={cancel}: {fates} "
        f"(upstream: {[(round(c.abandoned_after_s or 0, 2), c.served) for c in mine]})"
    )
    assert len(mine) <= 2
    assert fates == LEFT_REQUESTS[(variant, cancel)]
    assert httpx.get(f"{url}/ready", timeout=10).status_code == 200  # ... and it still serves


# A query left behind. WAVE clients read an item with a query that waits 1 s in the database
# and hang up after 0.2 s; a second wave does the same 0.3 s later. The proxy's pool holds 15
# connections (5 + 10 overflow), one per client of a wave, and `lab_db_statements_total` counts
# the queries started. Measured: `sync` (one thread) and `blocking` start one query, either way.
# `async` with the setting off starts one per client of the first wave and none of the second,
# the pool being full; with it on, the first wave is cancelled mid-query, but aiosqlite runs
# each query to its end in its own thread while SQLAlchemy throws the connection away, so the
# second wave gets new connections and more queries run at once than the pool has connections.
WAVE = 15
POOL = 15  # LAB_DB_POOL_SIZE + LAB_DB_MAX_OVERFLOW, the defaults
QUERIES_STARTED = {
    ("sync", False): 1,
    ("sync", True): 1,
    ("async", False): WAVE,
    ("async", True): 2 * WAVE,
    ("blocking", False): 1,
    ("blocking", True): 1,
}


def read_and_leave(url: str, item: int, leave_after_s: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /items/{item}?wait_ms=1000 HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
        time.sleep(leave_after_s)


def statements(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("lab_db_statements_total "):
            return float(line.split()[1])
    raise AssertionError("no lab_db_statements_total in /metrics")


def test_a_query_whose_client_left(cancel_arm: tuple[str, bool, str]) -> None:
    variant, cancel, url = cancel_arm
    if variant == "blocking" or (variant, cancel) == ("sync", False):
        pytest.skip("one query at a time either way (the loop, one thread): tested above")
    before = statements(url)
    with ThreadPoolExecutor(2 * WAVE) as pool:
        for i in range(2 * WAVE):
            if i == WAVE:
                time.sleep(0.3)
            pool.submit(read_and_leave, url, i + 1, 0.2)
    started = statements(url) - before  # at 0.5-0.6 s: the first wave's queries still wait
    print(f"\nqueries left behind {variant} cancel={cancel}: {started:.0f} started, pool {POOL}")
    assert started == QUERIES_STARTED[(variant, cancel)]
