"""A slow reader: the proxy stops reading its upstream when its client stops reading, in every
variant and client arm, its memory stays flat, and the stream resumes whole when the client
reads again.

The client asks for a long stream (16,384 tokens of 4,096 characters, ~70 MB, no delay between
them), reads its first bytes, then stops reading with a small receive buffer. If the proxy
buffered the stream for its client, the mock would hand over the whole stream in about a second;
with backpressure it stalls once the buffers between the two are full. Those are mostly the
kernel's: on this machine the proxy's send queue to its client and the mock's send queue reach
~4 MB each (`tcp_wmem`), and the proxy's receive queue from the mock grows up to `tcp_rmem`'s
32 MB when the proxy read fast before the stall (seen with async httpx: 11-19 MB held back of a
19 MB stream), which is why the stream is this long. The mock counts the bytes the server took
(`/stats` `streamed_bytes`); the test asserts the count stops growing short of the whole stream
and that the proxy's resident memory (`/metrics`) grew by far less than the stream. Then the
client reads on and must get every event.
"""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.live import CHAT, CLIENT_PARAMS, live_mock, live_proxy, mock_stats, wait_for

pytestmark = pytest.mark.integration

TOKENS = 16_384  # the mock's MAX_OUTPUT_TOKENS
HEADERS = {"x-mock-ttft-ms": "0", "x-mock-itl-ms": "0", "x-mock-token-chars": "4096"}
RCVBUF = 16_384
STALLED_S = 0.5  # no growth for this long: the mock is held back
SHARE = 0.75  # the mock is held back before this share of the stream
RSS_SHARE = 0.25  # the proxy's memory grows by less than this share of the stream


@pytest.fixture(scope="module")
def mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_mock(tmp_path_factory.mktemp("mock")) as url:
        yield url


def whole_stream_bytes(mock_url: str) -> int:
    """The bytes of the stream's token events, read straight from the mock."""
    before = mock_stats(mock_url)["streamed_bytes"]
    body = {**CHAT, "stream": True, "max_tokens": TOKENS}
    with httpx.stream(
        "POST", f"{mock_url}/v1/chat/completions", json=body, headers=HEADERS, timeout=30
    ) as r:
        r.read()
    return int(mock_stats(mock_url)["streamed_bytes"] - before)


def socket_buffers_max() -> int:
    """The most the kernel can buffer between the mock and the client, by this host's limits:
    the proxy's receive queue from the mock and two send queues (mock's, proxy's)."""

    def biggest(name: str) -> int:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[-1])

    return biggest("tcp_rmem") + 2 * biggest("tcp_wmem")


def proxy_rss(proxy_url: str) -> float:
    """The proxy's resident memory in bytes, from its `/metrics`."""
    text = httpx.get(f"{proxy_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "process_resident_memory_bytes":
            return family.samples[0].value
    raise AssertionError("no process_resident_memory_bytes in /metrics")


def request_bytes(host: str, port: int) -> bytes:
    body = httpx.Request("POST", "http://x", json={**CHAT, "stream": True, "max_tokens": TOKENS})
    content = body.read()
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(content)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in HEADERS.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + content


def held_back_at(mock_url: str, before: int, timeout: float = 15) -> int:
    """The mock's streamed bytes once they stop growing for `STALLED_S`."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = int(mock_stats(mock_url)["streamed_bytes"]) - before
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= STALLED_S:
            return now
        time.sleep(0.05)
    raise AssertionError(f"the mock never stopped streaming (at {last} bytes)")


@pytest.mark.parametrize("arm", CLIENT_PARAMS)
def test_a_stalled_reader_holds_the_upstream_back_and_loses_nothing(
    arm: tuple[str, str], mock_url: str, tmp_path: Path
) -> None:
    variant, client = arm
    whole = whole_stream_bytes(mock_url)
    with live_proxy(variant, mock_url, tmp_path, {"LAB_HTTP_CLIENT": client}) as url:
        host, port = httpx.URL(url).host, httpx.URL(url).port
        assert port is not None
        # One short stream first, so the proxy's client and pool exist before memory is read.
        body = {**CHAT, "stream": True, "max_tokens": 4}
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).raise_for_status()
        rss_before = proxy_rss(url)
        before = int(mock_stats(mock_url)["streamed_bytes"])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.settimeout(30)
        with sock:
            sock.connect((host, port))
            sock.sendall(request_bytes(host, port))
            received = sock.recv(4096)  # the head and the first events; then nothing
            held = held_back_at(mock_url, before)
            grew = proxy_rss(url) - rss_before
            print(
                f"\n{variant}/{client}: mock held back at {held / 1e6:.1f} of "
                f"{whole / 1e6:.1f} MB; proxy memory grew {grew / 1e6:.1f} MB"
            )
            assert grew < RSS_SHARE * whole
            if socket_buffers_max() < SHARE * whole:  # else they could hold what is held
                assert mock_stats(mock_url)["open_streams"] == 1
                assert held < SHARE * whole
            else:  # this host's socket buffers could hold the whole stream: memory says it
                print(f"socket buffers up to {socket_buffers_max() / 1e6:.0f} MB: not asserted")
            chunks = [received]
            while chunk := sock.recv(1 << 20):  # read on: the rest comes, whole
                chunks.append(chunk)
        text = b"".join(chunks).decode()
        assert text.startswith("HTTP/1.1 200")
        assert text.count('"content":"') == TOKENS
        assert '"error"' not in text
        assert "data: [DONE]" in text[-64:]
        assert wait_for(lambda: mock_stats(mock_url)["open_streams"] == 0, 5) is not None
