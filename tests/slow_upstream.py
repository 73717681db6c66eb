"""A slow upstream that watches its caller: did the proxy hang up before the answer, and when?

The mock upstream (`servers/upstream.py`) cannot tell: like Starlette under it, it finishes a
non-streamed completion whose caller left and counts it as served. This one, a plain threaded
socket server in the test process, holds each `POST .../chat/completions` for `hold_s` while it
watches the connection; if the proxy closes it first (or shuts its socket down), the request is
recorded as abandoned with the time since it arrived, else it is answered with conftest's
`fake_completion` (keep-alive) and recorded as served.
"""

import json
import select
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.conftest import fake_completion


@dataclass
class Call:
    """One upstream request as the upstream saw it."""

    arrived: float  # time.monotonic()
    abandoned_after_s: float | None = None  # the caller hung up this long after it arrived
    served: bool = False


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    hold_s: float
    calls: list[Call]
    lock: threading.Lock


def _read_request(sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(head, body, what follows) of the next request on `sock`, or None at its end."""
    data = buffered
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            return None
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        more = sock.recv(65536)
        if not more:
            return None
        rest += more
    return head, rest[:length], rest[length:]


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        buffered = b""
        while True:
            try:
                request = _read_request(sock, buffered)
            except OSError:
                return
            if request is None:
                return
            _, body, buffered = request
            call = Call(arrived=time.monotonic())
            with self.server.lock:
                self.server.calls.append(call)
            # Readable before the hold is over: the caller hung up (EOF, or a reset).
            readable, _, _ = select.select([sock], [], [], self.server.hold_s)
            if readable:
                call.abandoned_after_s = time.monotonic() - call.arrived
                return
            payload = json.dumps(fake_completion(json.loads(body))).encode()
            answer = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
            )
            try:
                sock.sendall(answer)
            except OSError:
                return
            call.served = True


@contextmanager
def slow_upstream(hold_s: float) -> Iterator[tuple[str, list[Call]]]:
    """The upstream on 127.0.0.1; yields its base URL (no `/v1`) and its calls so far."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hold_s, server.calls, server.lock = hold_s, [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.calls
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
