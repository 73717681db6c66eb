"""What a stalled server's threads wait for, read from a `py-spy dump` taken during the stall.

The locustfile runs `py-spy dump --pid <server>` once per cell when no request has completed for
`dump_after_s` while requests are in flight (it writes `threads.txt` in the cell's folder); this
module turns that text into counts per wait and one sentence, so a cell says *why* it stalled:
all tokens waiting for a DB connection (fastapi#12066), for an upstream connection, for
httpcore's pool lock, or a thread that holds that lock and waits for it itself (the garbage
collector finalizing an abandoned streamed response inside the pool: encode/httpcore#990).

Pure functions over text: unit-tested on dumps the lab recorded (tests/data/).
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import contract

# py-spy prints `Thread 123 (idle): "AnyIO worker thread"`, then one frame per line, innermost
# first: `    function (file.py:line)`.
_THREAD = re.compile(r'^Thread (\d+) \(([^)]*)\)(?:: "(.*)")?\s*$')
_FRAME = re.compile(r"^\s+(\S+) \((.+?):(\d+)\)\s*$")

WORKER = "AnyIO worker thread"

# Waits, in the order they are checked; each is (name, test on the stack's frames).
SELF_DEADLOCK = "holds httpcore's pool lock and waits for it (GC finalizing an unclosed stream)"
UPSTREAM_CONNECTION = "waits for an upstream connection (httpcore pool full)"
POOL_LOCK = "waits for httpcore's pool lock"
DB_CONNECTION = "waits for a DB connection (SQLAlchemy QueuePool)"
IDLE = "idle (no work)"
WORKING = "running"


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int


@dataclass
class ThreadStack:
    """One thread of the dump: its name and frames, innermost first."""

    tid: int
    name: str
    frames: list[Frame] = field(default_factory=list)

    @property
    def worker(self) -> bool:
        return self.name == WORKER


def parse_dump(text: str) -> list[ThreadStack]:
    """The threads of a `py-spy dump`, in order."""
    threads: list[ThreadStack] = []
    for line in text.splitlines():
        if m := _THREAD.match(line):
            threads.append(ThreadStack(int(m[1]), m[3] or ""))
        elif threads and (f := _FRAME.match(line)):
            threads[-1].frames.append(Frame(f[1], f[2], int(f[3])))
    return threads


def _in(frame: Frame, package: str, module: str) -> bool:
    inside = frame.file.startswith(f"{package}/") or f"/{package}/" in frame.file
    return inside and frame.file.endswith(module)


# Called by the pool only while it holds its lock: a finalizer running inside one of these (an
# allocation there can start the garbage collector) runs with the lock held.
_UNDER_LOCK = ("PoolRequest.__init__", "ConnectionPool._assign_requests_to_connections")


def wait_of(stack: ThreadStack) -> str:
    """What one thread waits for (one of the names above)."""
    frames = stack.frames
    pool = [i for i, f in enumerate(frames) if _in(f, "httpcore", "connection_pool.py")]
    pool2 = [i for i, f in enumerate(frames) if _in(f, "httpcore2", "connection_pool.py")]
    if pool and _self_deadlock(frames, pool):
        return SELF_DEADLOCK
    pool = sorted(pool + pool2)
    if pool:
        innermost = frames[min(pool)]
        if innermost.function.endswith("wait_for_connection"):
            return UPSTREAM_CONNECTION
        if min(pool) == 0 or frames[min(pool) - 1].file.endswith("_synchronization.py"):
            return POOL_LOCK
    if any(f.function.endswith("_do_get") and "sqlalchemy/pool" in f.file for f in frames):
        return DB_CONNECTION
    if stack.worker and frames and _idle(frames):
        return IDLE
    return WORKING


def _self_deadlock(frames: list[Frame], pool: list[int]) -> bool:
    """httpcore's (non-reentrant) pool lock wanted by a thread that already holds it.

    The thread waits to enter the lock (innermost: `_synchronization.py` `__enter__`) from a
    pool `close()`; further out, a pool method is inside a call it makes only under the lock
    (`_UNDER_LOCK`), with foreign code (a finalizer: a generator's close, a `__del__`) between.
    httpcore2's lock is re-entrant, so its stacks never qualify.
    """
    inner, outer = min(pool), max(pool)
    if inner == outer or not frames[0].file.endswith("_synchronization.py"):
        return False
    if not frames[inner].function.endswith("close"):
        return False
    if outer == 0 or not frames[outer - 1].function.endswith(_UNDER_LOCK):
        return False
    return any("httpcore" not in f.file for f in frames[inner:outer])


def _idle(frames: list[Frame]) -> bool:
    # A worker waiting for work: queue get / condition wait right under WorkerThread.run.
    for f in frames:
        if f.function.endswith("WorkerThread.run") or f.function == "run":
            return True
        if f.file.endswith(("threading.py", "queue.py")):
            continue
        return False
    return False


# The lab's own instrumentation around a probed app (`probe/`): never the app's code.
LAB_PROBE = Path(__file__).resolve().parents[1] / "probe"


def app_frame(stack: ThreadStack, root: Path) -> str | None:
    """The innermost frame of a thread in the app's own code, `file:line function`.

    py-spy prints a file relative to the `sys.path` entry it was found under (the app's folder
    is one), or absolute: a frame is the app's when that file is under `root`, outside any
    installed package and outside the lab's `probe/`.
    """
    base = root.resolve()
    for frame in stack.frames:
        if "site-packages" in frame.file or "dist-packages" in frame.file:
            continue
        path = Path(frame.file)
        path = path if path.is_absolute() else base / path
        try:
            resolved = path.resolve()
            shown = resolved.relative_to(base)
        except (OSError, ValueError):
            continue
        if resolved.is_file() and not resolved.is_relative_to(LAB_PROBE):
            return f"{shown}:{frame.line} {frame.function}"
    return None


def user_sites(text: str, root: Path) -> dict[str, object]:
    """Where in the app's own code a dump's threads were (`sync-async-lab probe` cells).

    `workers`: busy worker threads per innermost app frame (the endpoint line whose query
    waits for a connection, say). `loop`: the event loop's (the main thread's) innermost app
    frame, "" when it was not in the app's code: a loop held by the app shows where.
    """
    workers: Counter[str] = Counter()
    loop = ""
    for thread in parse_dump(text):
        site = app_frame(thread, root)
        if thread.name == "MainThread":
            loop = site or ""
        elif thread.worker and site and not (thread.frames and _idle(thread.frames)):
            workers[site] += 1
    return {"workers": dict(workers.most_common()), "loop": loop}


def summarize(text: str) -> dict[str, object]:
    """Counts per wait over the worker threads, and one sentence saying what they show."""
    threads = parse_dump(text)
    workers = [t for t in threads if t.worker]
    waits = Counter(wait_of(t) for t in workers)
    return {
        "threads": len(threads),
        "workers": len(workers),
        "waits": dict(waits.most_common()),
        "diagnosis": diagnosis(len(workers), waits),
    }


def diagnosis(workers: int, waits: Counter[str]) -> str:
    """E.g. "self-deadlock: 1/40 worker threads holds ...; 39/40 waits for ..."."""
    if not workers:
        return "no worker threads"
    order = [SELF_DEADLOCK, DB_CONNECTION, UPSTREAM_CONNECTION, POOL_LOCK, WORKING, IDLE]
    parts = [f"{waits[what]}/{workers} {what}" for what in order if waits.get(what)]
    busy = workers - waits.get(IDLE, 0)
    head = ""
    if waits.get(SELF_DEADLOCK):
        head = f"{contract.SELF_DEADLOCK}: "
    elif busy and waits.get(DB_CONNECTION, 0) + waits.get(UPSTREAM_CONNECTION, 0) >= busy:
        head = "every busy worker thread waits for a pooled connection: "
    return head + "; ".join(parts)
