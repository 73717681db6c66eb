"""How quiet is the machine right now: two fixed micro-benchmarks to record next to a run.

`python -m loadtests.calibrate` prints `{"python_loop_per_s", "asgi_hello_per_s", "ts"}`:

- `python_loop_per_s`: iterations per second of a fixed pure-Python loop (integer arithmetic and
  a small dict), in a child process pinned to the server core, best of three short runs. It
  drops when something else runs on that core or the CPU is throttled.
- `asgi_hello_per_s`: completed round trips per second against a bare ASGI app
  (`loadtests/bare_asgi.py`, no framework) under `uvicorn --loop uvloop --http httptools`
  pinned to the server core, driven by a keep-alive HTTP/1.1 client with 8 connections in a
  child pinned to the load cores, so neither this orchestrating process nor the client's start
  is measured. It is the ceiling of the serving stack without FastAPI, on this machine, now.

Why the client is hand-written (asyncio protocol on raw sockets): wrk, h2load and oha are not
pip-installable, and Locust would measure mostly itself. What makes the figure comparable across
runs is that the client is fixed: the same code, connections and request every time, so a change
in the number is a change in the machine, not in the tool.
"""

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from loadtests.process import Pinning, ServerError, free_port, spawn, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 8
LOOP_RUNS = 3
LOOP_BATCH = 10_000
CLIENT_WARMUP_S = 0.1
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
CHILD_TIMEOUT_S = 30.0


class CalibrationError(RuntimeError):
    """A calibration child failed; the message carries the end of its output."""


# --- in the children ---------------------------------------------------------------------------


def loop_work(n: int) -> int:
    """The fixed workload: `n` iterations of integer arithmetic and a store into a small dict."""
    table: dict[int, int] = {}
    total = 0
    for i in range(n):
        total += i * 7 % 13
        table[i & 255] = total
    return total + len(table)


def loop_rate(seconds: float, runs: int = LOOP_RUNS) -> float:
    """Best iterations per second over `runs` runs of `seconds / runs` each."""
    best = 0.0
    for _ in range(runs):
        done = 0
        start = now = time.perf_counter()
        deadline = start + seconds / runs
        while now < deadline:
            loop_work(LOOP_BATCH)
            done += LOOP_BATCH
            now = time.perf_counter()
        best = max(best, done / (now - start))
    return best


def content_length(head: bytes) -> int:
    """The body length of a `200` response head (status line and headers, no blank line)."""
    status, *lines = head.split(b"\r\n")
    if status.split(b" ", 2)[1:2] != [b"200"]:
        raise ValueError(f"unexpected response {status!r}")
    for line in lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("response without content-length")


class KeepAlive(asyncio.Protocol):
    """One connection: sends the next request as soon as the previous response is complete.

    The event loop only logs what a protocol callback raises, so failures are kept in `error`
    for `_drive` to raise.
    """

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.buffer = b""
        self.completed = 0
        self.running = True
        self.error: BaseException | str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence the cast.
        self.transport = cast(asyncio.WriteTransport, transport)
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                size = end + 4 + content_length(self.buffer[:end])
                if len(self.buffer) < size:
                    return
                self.buffer = self.buffer[size:]
                self.completed += 1
                if self.running and self.transport is not None:
                    self.transport.write(REQUEST)
        except ValueError as exc:
            self.error = exc
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.running and self.error is None:
            self.error = exc or "closed by the server"


async def _drive(port: int, seconds: float, connections: int) -> float:
    loop = asyncio.get_running_loop()
    conns: list[KeepAlive] = []
    try:
        for _ in range(connections):
            _, protocol = await loop.create_connection(KeepAlive, "127.0.0.1", port)
            conns.append(protocol)
        await asyncio.sleep(CLIENT_WARMUP_S)
        before, start = sum(c.completed for c in conns), time.perf_counter()
        await asyncio.sleep(seconds)
        after, end = sum(c.completed for c in conns), time.perf_counter()
        if errors := [c.error for c in conns if c.error is not None]:
            raise ConnectionError(f"{len(errors)} connection(s) failed: {errors[0]!r}")
        if after == before:
            raise ConnectionError("no round trip completed")
        return (after - before) / (end - start)
    finally:
        for conn in conns:
            conn.running = False
            if conn.transport is not None:
                conn.transport.close()


def drive(port: int, seconds: float, connections: int = CONNECTIONS) -> float:
    """Round trips per second over `connections` keep-alive connections, after a short warm-up."""
    import uvloop  # uvicorn[standard] brings it; a fast client keeps the server the bottleneck

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_drive(port, seconds, connections))


# --- in the orchestrator -----------------------------------------------------------------------


def _child_command(python: str, call: str) -> list[str]:
    """Run `loadtests.calibrate.<call>` in a fresh interpreter; it prints the result as JSON."""
    code = f"import json\nfrom loadtests import calibrate\nprint(json.dumps(calibrate.{call}))"
    return [python, "-c", code]


def uvicorn_command(python: str, port: int) -> list[str]:
    """The bare app under uvicorn, as the lab serves its apps (uvloop, httptools, no access log)."""
    return [
        python, "-m", "uvicorn", "loadtests.bare_asgi:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--lifespan", "off", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def _tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def _run_child(cmd: list[str], log: Path, cpus: Sequence[int] | None) -> Any:
    """Run a child to completion (killed on any error) and return the JSON it printed last."""
    with spawn(cmd, log, cpus=cpus, cwd=ROOT) as proc:
        try:
            code = proc.wait(CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CalibrationError(f"timed out after {CHILD_TIMEOUT_S:.0f} s") from None
    lines = log.read_text(errors="replace").strip().splitlines()
    if code != 0 or not lines:
        raise CalibrationError(f"exited with code {code}:\n{_tail(log)}")
    return json.loads(lines[-1])


def calibrate(
    pinning: Pinning, python: str = sys.executable, seconds: float = 1.0
) -> dict[str, float]:
    """Both figures, each measured for about `seconds`; every child is gone when this returns."""
    ts = time.time()
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        logs = Path(tmp)
        loop_per_s = _run_child(
            _child_command(python, f"loop_rate({seconds!r})"), logs / "loop.log", pinning.server
        )
        port = free_port()
        server_log = logs / "uvicorn.log"
        with spawn(uvicorn_command(python, port), server_log, cpus=pinning.server, cwd=ROOT) as srv:
            try:
                wait_healthy(srv, f"http://127.0.0.1:{port}/", timeout=CHILD_TIMEOUT_S)
            except ServerError as exc:
                raise CalibrationError(f"uvicorn {exc}:\n{_tail(server_log)}") from exc
            hello_per_s = _run_child(
                _child_command(python, f"drive({port}, {seconds!r})"),
                logs / "client.log",
                pinning.load,
            )
    return {
        "python_loop_per_s": float(loop_per_s),
        "asgi_hello_per_s": float(hello_per_s),
        "ts": ts,
    }


def main(argv: list[str] | None = None) -> int:
    """Calibrate with the benchmark's pinning and print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.calibrate", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each measurement")
    args = parser.parse_args(argv)
    print(json.dumps(calibrate(Pinning.plan(), seconds=args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
