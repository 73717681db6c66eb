"""Who holds the event loop: an in-process sampler that names the user's line that blocked it.

A heartbeat task on the loop stamps the time every `HEARTBEAT_S`; a watcher thread checks the
stamp every `POLL_S`. When the stamp is older than the threshold, the loop is held by one
callback, and the watcher samples the loop thread's stack (`sys._current_frames()`) until the
heartbeat comes back. That interval is one *episode*: how long the loop was held, and the frames
that held it. Each sample is attributed to the innermost frame of the user's own code (under the
app's folder, not an installed package, not the lab), with the call under it: the Python
function it called (`requests.api.get`), or for a C call the call written at that line
(`time.sleep`), read from the instruction the frame is executing (`co_positions`). A loop busy
with many short callbacks (a saturated async server) shows no episode: each callback returns to
the loop, and the heartbeat with it, well within the threshold.

Why in-process and not py-spy: the loop must be sampled while it is held, within milliseconds,
thousands of times a cell; py-spy attaches with ptrace per dump (tens of milliseconds each) and
is kept for the stalls, where every worker thread must be seen. Why not asyncio's debug mode
(`slow_callback_duration`): it names the callback (a Task step), not the line inside it, and
changes how the loop runs.

The watcher holds the GIL only to read the stamp and, when blocked, the frames; a loop blocked
in a C call (`time.sleep`, a socket read) has released the GIL, and a loop running Python hands
it over at the interpreter's switch interval (5 ms), so CPU-bound blocking is sampled too.
"""

import ast
import asyncio
import contextlib
import functools
import inspect
import json
import linecache
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from probe.inventory import is_lab_file, is_user_file

HEARTBEAT_S = 0.002
POLL_S = 0.001
WRITE_S = 0.5
# A callback that holds the loop this long is an episode.
THRESHOLD_S = 0.010
# Episodes kept per server (each is a few numbers); beyond it they are counted, not kept.
MAX_EPISODES = 50_000
MAX_FRAMES = 80
# Episodes of the lab's own code (its instrumentation) are not the app's: they are dropped.
LAB = "(the lab's instrumentation)"


@dataclass(frozen=True)
class Site:
    """Where the loop was held: the user's frame, the call under it, and the user frames above."""

    file: str
    line: int
    function: str
    call: str
    # User frames from the outermost to this one: `file:line function`, for the report.
    chain: tuple[str, ...] = ()
    # The library frame innermost on the stack when no user frame is on it ("" otherwise).
    library: str = ""
    # The route whose endpoint or dependency is on the stack ("" when none is).
    route: str = ""
    # The call under the user's frame is a coroutine it awaits (`await client.get(...)`): what
    # held the loop ran inside an async library between two of its awaits.
    awaited: bool = False

    @property
    def user(self) -> bool:
        """Whether the site is in the user's code."""
        return not self.library

    def text(self) -> str:
        """`app.py:12` (`time.sleep`), or the library frame when none of the user's."""
        if self.library:
            return self.library
        return f"{self.file}:{self.line}"


@dataclass
class Episode:
    """One time the loop was held past the threshold.

    Under load one episode can span several requests' calls run back to back (the heartbeat
    waits behind all of them), so it is also split into *holds*: runs of samples in one and the
    same call of the user's code (the same frame object), each the time one call held the loop.
    """

    start: float
    held_s: float = 0.0
    samples: dict[Site, int] = field(default_factory=dict)
    # (start epoch s, seconds, site, loop thread CPU seconds) of each call that held the loop.
    holds: list[tuple[float, float, Site, float | None]] = field(default_factory=list)

    def site(self) -> Site | None:
        """The site most samples fell on."""
        return max(self.samples, key=self.samples.__getitem__) if self.samples else None


def written_call(frame: FrameType) -> str:
    """`called_at` for the frame's code and executing instruction (one parse per instruction:
    the watcher samples a held loop every millisecond, with the GIL)."""
    return called_at(frame.f_code, frame.f_lasti)


@functools.lru_cache(maxsize=4096)
def called_at(code: CodeType, lasti: int) -> str:
    """The function called at instruction `lasti` of `code`, as the user wrote it
    (`time.sleep`, `sync_client.chat.completions.create`, `session.query(User).first`; "" when
    the instruction is not a call): the source span of the instruction, parsed, its call's
    callee written back (`ast.unparse`), so a chain or a call over several lines reads whole
    (but for a chain broken over lines, where CPython 3.11+ starts the call's span at its last
    attribute: `first`)."""
    try:
        positions = list(code.co_positions())
        line, end_line, col, end_col = positions[lasti // 2]
    except (IndexError, ValueError):
        return ""
    if line is None or end_line is None or col is None or end_col is None:
        return ""
    lines = [linecache.getline(code.co_filename, n) for n in range(line, end_line + 1)]
    if not lines or not all(lines):
        return ""
    lines[-1] = lines[-1][:end_col]
    lines[0] = lines[0][col:]
    try:
        node = ast.parse("".join(lines).strip(), mode="eval").body
    except SyntaxError:
        return ""
    if isinstance(node, ast.Await):
        node = node.value
    return ast.unparse(node.func) if isinstance(node, ast.Call) else ""


def call_under(frame: FrameType, inner: FrameType | None) -> str:
    """What the user's `frame` was calling: the next Python frame's function (`requests.api.get`),
    or the call expression at the executing instruction (a C function such as `time.sleep`). A
    decorator's wrapper (a function defined inside another, `<locals>` in its name) says less than
    what the user wrote, so the written call names it then."""
    if inner is not None:
        qualname = inner.f_code.co_qualname
        if "<locals>" in qualname and (written := written_call(frame)):
            return written
        module = inner.f_globals.get("__name__", "?")
        return f"{module}.{qualname}"
    return written_call(frame)


def is_awaited(inner: FrameType | None) -> bool:
    """Whether the frame under the user's is a coroutine (or async generator) it awaits."""
    return inner is not None and bool(
        inner.f_code.co_flags & (inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR)
    )


class SiteFinder:
    """Turns a stack into a `Site`, with a cache per code object (files resolved once)."""

    def __init__(self, root: Path, codes: dict[Any, str] | None = None) -> None:
        self.root = root.resolve()
        # Code objects of the routes' endpoints and dependencies -> route id.
        self.codes = codes or {}
        self._user: dict[str, tuple[bool, str]] = {}
        self._lab: dict[str, bool] = {}

    def _is_lab(self, filename: str) -> bool:
        known = self._lab.get(filename)
        if known is None:
            known = self._lab[filename] = is_lab_file(Path(filename).resolve())
        return known

    def _is_user(self, filename: str) -> tuple[bool, str]:
        known = self._user.get(filename)
        if known is None:
            path = Path(filename)
            user = path.is_absolute() and is_user_file(path.resolve(), self.root)
            shown = str(path.resolve().relative_to(self.root)) if user else filename
            known = self._user[filename] = (user, shown)
        return known

    def site(self, innermost: FrameType) -> Site:
        """The innermost user frame of the stack and the call under it."""
        return self.site_and_frame(innermost)[0]

    def site_and_frame(self, innermost: FrameType) -> tuple[Site, FrameType | None]:
        """The site, and the user's frame object it is in (one call of the user's code: the
        same object from sample to sample while that call holds the loop)."""
        frames: list[FrameType] = []
        frame: FrameType | None = innermost
        while frame is not None and len(frames) < MAX_FRAMES:
            frames.append(frame)
            frame = frame.f_back
        users = [(i, f) for i, f in enumerate(frames) if self._is_user(f.f_code.co_filename)[0]]
        route = next((self.codes[f.f_code] for f in reversed(frames) if f.f_code in self.codes), "")
        if not users and any(self._is_lab(f.f_code.co_filename) for f in frames):
            return Site("", 0, "", "", (), LAB), None
        if not users:
            top = frames[0]
            library = f"{_short(top.f_code.co_filename)}:{top.f_lineno} {top.f_code.co_qualname}"
            return Site("", 0, "", "", (), library, route), None
        i, found = users[0]
        inner = frames[i - 1] if i > 0 else None
        chain = tuple(
            f"{self._is_user(f.f_code.co_filename)[1]}:{f.f_lineno} {f.f_code.co_qualname}"
            for _, f in reversed(users)
        )
        site = Site(
            self._is_user(found.f_code.co_filename)[1],
            found.f_lineno,
            found.f_code.co_qualname,
            call_under(found, inner),
            chain,
            route=route,
            awaited=is_awaited(inner),
        )
        return site, found


def _thread_clock(thread: int | None) -> int | None:
    """The CPU clock of a thread (its ident), where the platform has one."""
    if thread is None:
        return None
    try:
        return time.pthread_getcpuclockid(thread)
    except (AttributeError, OSError):
        return None


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "dist-packages", "lib"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    return filename


class LoopWatch:
    """The heartbeat (on the loop) and the watcher (a thread), and the episodes they saw."""

    def __init__(
        self,
        root: Path,
        codes: dict[Any, str] | None = None,
        threshold_s: float = THRESHOLD_S,
        report_path: Path | None = None,
    ) -> None:
        self.finder = SiteFinder(root, codes)
        self.threshold_s = threshold_s
        # Written by the watcher thread itself (every WRITE_S while something changed, and at
        # the end): a loop held for good cannot answer an HTTP request for its own report.
        self.report_path = report_path
        self.beat = time.perf_counter()
        self.episodes: list[Episode] = []
        self.current: Episode | None = None
        self.facts: dict[str, Any] = {}
        self.dropped = 0
        self.started_at = time.time()
        self._loop_thread: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def heartbeat(self) -> None:
        """Stamp the time on the loop until cancelled."""
        while True:
            self.beat = time.perf_counter()
            await asyncio.sleep(HEARTBEAT_S)

    def _watch(self) -> None:
        beat_seen = self.beat
        # The call holding the loop now: its frame object (kept, so no later call can take its
        # address), site, and when it was first and last seen.
        frame_held: FrameType | None = None
        held_site: Site | None = None
        # The sites the held call's samples fell on: the hold is named by the most frequent
        # (its first sample may still be at the call's first line, before the blocking call).
        held_sites: dict[Site, int] = {}
        first = last = 0.0
        # The loop thread's own CPU time (Linux: its pthread CPU clock), read when a heartbeat
        # is seen and at each sample: a hold of pure-Python code that used no CPU was the
        # thread waiting for a core (a busy machine), not the app holding the loop.
        clock = _thread_clock(self._loop_thread)
        cpu_beat = cpu_first = cpu_last = time.clock_gettime(clock) if clock is not None else 0.0

        def close_hold(episode: Episode | None) -> None:
            nonlocal frame_held, held_site
            if episode is not None and held_site is not None:
                held_site = max(held_sites, key=held_sites.__getitem__)
                wall = time.time() - (time.perf_counter() - first)
                cpu = (cpu_last - cpu_first) if clock is not None else None
                episode.holds.append((wall, last - first, held_site, cpu))
            frame_held, held_site = None, None
            held_sites.clear()

        # (-1, ...): the first pass writes, so the file exists even if the loop is never held.
        written_at, written = 0.0, (-1, False)
        while not self._stop.wait(POLL_S):
            now = time.perf_counter()
            beat = self.beat
            current = self.current
            if current is not None and beat != beat_seen:
                # The loop is back: the episode lasted from the last stamp to this one.
                current.held_s = max(beat - beat_seen - HEARTBEAT_S, 0.0)
                close_hold(current)
                self._keep(current)
                self.current = current = None
            if beat != beat_seen and clock is not None:
                cpu_beat = time.clock_gettime(clock)
            beat_seen = beat
            state = (len(self.episodes), current is not None)
            if now - written_at >= WRITE_S and (state != written or current is not None):
                self.write()
                written_at, written = now, state
            if now - beat < self.threshold_s + HEARTBEAT_S:
                continue
            frame = sys._current_frames().get(self._loop_thread or -1)
            if frame is None:
                continue
            opened = current is None
            if current is None:
                self.current = current = Episode(start=time.time() - (now - beat))
            current.held_s = now - beat - HEARTBEAT_S
            site, user_frame = self.finder.site_and_frame(frame)
            current.samples[site] = current.samples.get(site, 0) + 1
            cpu_now = time.clock_gettime(clock) if clock is not None else 0.0
            if user_frame is None or user_frame is not frame_held:
                close_hold(current)
                frame_held, held_site = user_frame, site
                # The first call of an episode held the loop since the heartbeat went quiet; a
                # later one since the last sample of the call before it (they tile the episode).
                first = beat + HEARTBEAT_S if opened else last
                cpu_first = cpu_beat if opened else cpu_last
            held_sites[site] = held_sites.get(site, 0) + 1
            last, cpu_last = now, cpu_now
            del frame, user_frame
        self.write()

    def write(self) -> None:
        """Write the report to `report_path` (from the watcher's thread, never the loop's)."""
        if self.report_path is None:
            return
        text = json.dumps(self.report())
        tmp = self.report_path.with_name(f".{self.report_path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.report_path)

    def _keep(self, episode: Episode) -> None:
        site = episode.site()
        if episode.held_s < self.threshold_s or site is None or site.library == LAB:
            return
        if len(self.episodes) >= MAX_EPISODES:
            self.dropped += 1
            return
        self.episodes.append(episode)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the heartbeat and the watcher while the block runs (inside the loop)."""
        self._loop_thread = threading.get_ident()
        self.beat = time.perf_counter()
        task = asyncio.create_task(self.heartbeat())
        self._thread = threading.Thread(target=self._watch, name="lab-loop-watch", daemon=True)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._thread.join(1.0)

    def report(self) -> dict[str, Any]:
        """What `/__lab/blocking` answers: every episode, and the sites they were held at."""
        sites: dict[Site, int] = {}
        episodes = []
        holds = []
        ongoing = None
        for ep in [*self.episodes, self.current]:
            site = ep.site() if ep is not None else None
            if ep is None or site is None or site.library == LAB:
                continue
            index = sites.setdefault(site, len(sites))
            row = [round(ep.start, 4), round(ep.held_s * 1000, 3), index]
            if ep is self.current:
                ongoing = row
            else:
                episodes.append(row)
            for began, seconds, where, cpu in list(ep.holds):
                if where.library != LAB:
                    index = sites.setdefault(where, len(sites))
                    cpu_ms = None if cpu is None else round(cpu * 1000, 3)
                    holds.append([round(began, 4), round(seconds * 1000, 3), index, cpu_ms])
        return {
            "threshold_ms": self.threshold_s * 1000,
            "heartbeat_ms": HEARTBEAT_S * 1000,
            "started_at": self.started_at,
            "dropped": self.dropped,
            "sites": [
                {
                    "file": s.file,
                    "line": s.line,
                    "function": s.function,
                    "call": s.call,
                    "chain": list(s.chain),
                    "library": s.library,
                    "route": s.route,
                    "awaited": s.awaited,
                }
                for s in sites
            ],
            # [start epoch s, held ms, index into sites]
            "episodes": episodes,
            # An episode still under way when the report was written (the loop is held now).
            "ongoing": ongoing,
            # [start epoch s, held ms, index into sites, the loop thread's CPU ms in it (None
            # where the platform has no thread CPU clock)]: each call of the user's code that
            # held the loop (an episode under load spans several calls run back to back).
            "holds": holds,
            "written_at": time.time(),
            "facts": self.facts,
        }
