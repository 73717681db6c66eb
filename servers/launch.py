"""How `python -m servers <app> --server NAME` serves an app under each ASGI server the lab offers.

The list of servers is `contract.SERVERS` (the default, `contract.DEFAULT_SERVER`, is what every
run before issue 20 used). Each one serves on 127.0.0.1 with one process serving requests, its
access log off, and stops gracefully on SIGTERM (in-flight requests finish, the app's lifespan
shutdown runs); the orchestrator SIGKILLs the process group after `loadtests.process.STOP_GRACE_S`
whatever the server does. Otherwise each server keeps its own defaults (keep-alive, backlog,
HTTP version detection): the lab measures what a user gets out of the box.

| name | server | event loop | HTTP parser | ASGI HTTP `spec_version` |
| --- | --- | --- | --- | --- |
| `uvicorn-httptools` | uvicorn | uvloop | httptools | 2.3 |
| `uvicorn-h11` | uvicorn | uvloop | h11 | 2.3 |
| `uvicorn-asyncio` | uvicorn | asyncio's own | httptools | 2.3 |
| `granian` | granian (Rust, hyper + tokio), `--interface asgi` | uvloop | hyper | 2.3 |
| `hypercorn` | hypercorn, worker class `asyncio` (its default) | asyncio's own | h11 | 2.1 |

What was read and found (versions in `manifest.json` `versions`):

- **Every server speaks ASGI < 2.4 on HTTP**, so Starlette's `StreamingResponse` takes the same
  path on all of them: its send loop runs beside a task waiting for `http.disconnect`, which
  cancels the send loop when the client leaves (`starlette/responses.py`, `spec_version >= (2,
  4)` else the task group). That is the first step of the `def` streaming deadlock (the sync
  relay is left suspended for the garbage collector); no server here changes it. uvicorn
  advertises 2.3 in both `protocols/http/httptools_impl.py` and `h11_impl.py` (it raised
  `ClientDisconnected` from `send()` for a while, then reverted it: Kludex/uvicorn#2271, #2276,
  #2513; #3085 proposes it again), granian 2.3 (`src/asgi/utils.rs`; a `send()` after the
  client left is swallowed and logged, emmett-framework/granian#650), hypercorn 2.1
  (`hypercorn/protocol/http_stream.py`; django/asgiref#578: no HTTP server implements 2.4).
- **How each tells the app the client left** (what ends Starlette's send loop): uvicorn, both
  parsers, sets `disconnected` in `connection_lost` and answers every later `receive()` with
  `http.disconnect`, and `send()` returns silently; hypercorn puts `http.disconnect` on the app's
  queue when its protocol sees `StreamClosed`; granian notifies a per-connection `Notify` when
  hyper's connection future ends (`src/workers.rs`), which `receive()` turns into
  `http.disconnect`, and `send()` after it only logs `ASGI transport error` (`src/asgi/io.rs`).
  So on all four a client that closes its connection mid-stream ends the send loop at once.
- **granian and `def` endpoints' thread tokens.** granian runs its Rust runtime (`--runtime-
  threads`, 1) for I/O and hands each request to a Python asyncio loop (`--loop`: `auto` picks
  rloop, then uvloop; rloop is not installed here, and the lab pins `uvloop`). Its
  `--blocking-threads` are the threads that talk to the interpreter; on an async interface the
  value is fixed at 1 (granian's README, "Workers and threads": "the option is irrelevant on
  asynchronous protocols"), so FastAPI's `def` endpoints still go through anyio's threadpool on
  that loop: the lab's `LAB_THREADPOOL_TOKENS` (anyio's 40 by default) bounds them as under
  uvicorn. Measured by `tests/test_asgi_servers.py` on every server: a `def` endpoint runs on
  an "AnyIO worker thread", never the loop's, the limiter's `total_tokens` is the lab's setting
  and at most that many `def` requests run at once; an `async def` endpoint runs on the loop's
  thread, the process's main thread on every server.
- **granian's process model.** On a GIL build `Granian(...).serve()` is `MPServer`: the
  `python -m servers` process supervises one worker *process* (forked) that runs the loop and the
  app. CPU is sampled over the process tree and `/metrics` is answered by the worker, so both are
  right; a `py-spy dump --pid <server>` of the supervisor shows none of the app's threads (it
  needs `--subprocesses`). granian's embeddable server would keep one process, but its README
  calls it experimental.
- **hypercorn's loop.** Its worker class picks the loop: `asyncio` (the default, asyncio's own
  loop), `uvloop` or `trio`. The lab runs the default. `run(config)` with `workers = 0` runs that
  worker in this process (no supervisor; `hypercorn/run.py`), which is what `hypercorn -w 1`
  runs in its one child. Its defaults differ from uvicorn's where a benchmark may notice: listen
  backlog 100 (uvicorn 2048, granian 1024) and a 3 s graceful timeout.
- **The `/metrics` monitor** (`servers/metrics.py`) samples the running asyncio loop and anyio's
  default limiter of that loop; every server here runs the app's lifespan on the loop that serves
  its requests, so it works unchanged under each (checked by the same tests).
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from contract import DEFAULT_SERVER, SERVERS


@dataclass(frozen=True)
class Launch:
    """What to serve and where: an import string (`module:attr`), host, port, logging."""

    target: str
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "warning"
    access_log: bool = False


def _uvicorn(launch: Launch, *, loop: str, http: str) -> None:
    import uvicorn

    uvicorn.run(
        launch.target,
        host=launch.host,
        port=launch.port,
        loop=loop,
        http=http,
        log_level=launch.log_level,
        access_log=launch.access_log,
    )


def _granian(launch: Launch) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    Granian(
        launch.target,
        address=launch.host,
        port=launch.port,
        interface=Interfaces.ASGI,
        workers=1,
        # `auto` would pick rloop if it were installed: pinned, so a run says what it ran.
        loop=Loops.uvloop,
        log_level=LogLevels(launch.log_level),
        log_access=launch.access_log,
    ).serve()


def _hypercorn(launch: Launch, *, worker_class: str = "asyncio") -> None:
    from hypercorn.config import Config
    from hypercorn.run import run

    config = Config()
    config.application_path = launch.target
    config.bind = [f"{launch.host}:{launch.port}"]
    config.worker_class = worker_class
    # 0: the worker runs in this process (hypercorn/run.py), one serving process, no supervisor.
    config.workers = 0
    config.loglevel = launch.log_level.upper()
    config.accesslog = "-" if launch.access_log else None
    raise SystemExit(run(config))


LAUNCHERS: dict[str, Callable[[Launch], None]] = {
    "uvicorn-httptools": lambda launch: _uvicorn(launch, loop="uvloop", http="httptools"),
    "uvicorn-h11": lambda launch: _uvicorn(launch, loop="uvloop", http="h11"),
    "uvicorn-asyncio": lambda launch: _uvicorn(launch, loop="asyncio", http="httptools"),
    "granian": _granian,
    "hypercorn": _hypercorn,
}


def serve(launch: Launch, server: str = DEFAULT_SERVER) -> None:
    """Serve `launch.target` under `server` (one of contract.SERVERS) until SIGTERM."""
    if server not in SERVERS:
        raise ValueError(f"unknown server {server!r}; choose from {list(SERVERS)}")
    LAUNCHERS[server](launch)


def loop_name() -> str:
    """The running loop's implementation, e.g. `uvloop.Loop` (for tests and diagnostics)."""
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"
