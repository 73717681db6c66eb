"""Reading a stalled server's `py-spy dump`: what each worker thread waits for."""

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from loadtests import threads
from loadtests.assess import in_gap, thread_dump

DATA = Path(__file__).parent / "data"


def dump(name: str) -> str:
    return (DATA / f"dump_{name}.txt").read_text()


def test_parse_keeps_threads_and_frames_innermost_first() -> None:
    stacks = threads.parse_dump(dump("upstream_pool"))
    assert len(stacks) == 41
    assert stacks[0].name == "MainThread" and not stacks[0].worker
    worker = stacks[1]
    assert worker.worker
    assert worker.frames[0].function == "Condition.wait"
    assert worker.frames[0].file == "threading.py"
    assert any(f.function == "chat_completions" for f in worker.frames)


@pytest.mark.parametrize(
    ("name", "waits", "head"),
    [
        # Recorded: chat_stream sync, 200 users: every token waits for an upstream connection.
        ("upstream_pool", {threads.UPSTREAM_CONNECTION: 40}, "every busy worker"),
        # Recorded: items_read sync, 200 users: fastapi#12066 (8 spare threads are idle).
        ("db_pool", {threads.DB_CONNECTION: 40, threads.IDLE: 8}, "every busy worker"),
        # Recorded: bench-deadlock, chat_stream sync at 200 users, 11 s into a stall: the stack of
        # encode/httpcore#990 (a finalizer inside handle_request takes the lock again).
        ("self_deadlock", {threads.SELF_DEADLOCK: 1, threads.POOL_LOCK: 39}, "self-deadlock"),
    ],
)
def test_each_recorded_stall_is_named(name: str, waits: dict[str, int], head: str) -> None:
    found = threads.summarize(dump(name))
    assert found["waits"] == waits
    assert str(found["diagnosis"]).startswith(head)


def holder() -> threads.ThreadStack:
    """The self-deadlocked thread of the recorded dump (bench-deadlock, pass 2)."""
    (found,) = [t for t in threads.parse_dump(dump("self_deadlock")) if threads.wait_of(t) == SELF]
    return found


SELF = threads.SELF_DEADLOCK


def test_the_recorded_self_deadlock_is_the_garbage_collector_inside_the_pool() -> None:
    frames = [f.function for f in holder().frames]
    assert frames[:2] == ["ThreadLock.__enter__", "PoolByteStream.close"]
    # The finalizer ran inside _assign_requests_to_connections, which handle_request calls under
    # its lock; between them, the abandoned stream's generators (httpx's iter_bytes).
    under = frames.index("ConnectionPool._assign_requests_to_connections")
    assert frames[under + 1] == "ConnectionPool.handle_request"
    assert "Response.iter_bytes" in frames[:under]


def test_a_close_under_handle_request_outside_the_lock_is_not_a_self_deadlock() -> None:
    stack = holder()
    at = [f.function for f in stack.frames].index("ConnectionPool._assign_requests_to_connections")
    # The same finalizer, run by the collector before handle_request takes its lock.
    outside = replace(stack.frames[at], function="Timeouts.get", file="httpcore/_models.py")
    moved = threads.ThreadStack(
        stack.tid, stack.name, [*stack.frames[:at], outside, *stack.frames[at + 1 :]]
    )
    assert threads.wait_of(moved) == threads.POOL_LOCK


def test_httpcore2s_reentrant_lock_never_self_deadlocks() -> None:
    stack = holder()
    frames = [
        replace(f, file=f.file.replace("httpcore/", "httpcore2/", 1))
        if f.file.startswith("httpcore/")
        else f
        for f in stack.frames
    ]
    assert threads.wait_of(threads.ThreadStack(stack.tid, stack.name, frames)) == threads.POOL_LOCK


def test_diagnosis_names_a_partial_wait_without_the_every_worker_head() -> None:
    text = threads.diagnosis(40, Counter({threads.DB_CONNECTION: 10, threads.WORKING: 30}))
    assert text == f"10/40 {threads.DB_CONNECTION}; 30/40 {threads.WORKING}"
    assert threads.diagnosis(0, Counter()) == "no worker threads"


def test_cell_thread_dump_fields(tmp_path: Path) -> None:
    assert thread_dump(tmp_path, None) == {"threads": ""}
    missing = thread_dump(tmp_path, [{"error": "py-spy not found"}])
    assert missing["threads"].startswith("no dump: py-spy not found")
    (tmp_path / "refused.txt").write_text("Error: Permission Denied\nmore\n")
    refused = thread_dump(tmp_path, [{"since_s": 4.0, "file": "refused.txt", "code": 1}])
    assert refused["threads"] == "no dump: py-spy exited 1: Error: Permission Denied"
    (tmp_path / "threads.txt").write_text(dump("upstream_pool"))
    (tmp_path / "threads-stall.txt").write_text(dump("db_pool"))
    # The last dump (taken when the gap became a stall) is the one the cell is judged by.
    found = thread_dump(
        tmp_path,
        [
            {"since_s": 4.0, "in_flight": 200, "file": "threads.txt"},
            {"since_s": 5.1, "in_flight": 200, "file": "threads-stall.txt"},
        ],
    )
    assert found["threads"].endswith("(after 5.1 s without a completion, 200 in flight)")
    assert found["thread_waits"][threads.DB_CONNECTION] == 40


def test_the_dump_inside_the_longest_gap_is_the_one_judged() -> None:
    early = {"at_s": 4.0, "file": "threads.txt"}  # a warm-up gap, 4 s after the start
    later = {"at_s": 30.0, "file": "threads-stall.txt"}  # inside the gap of 20-32 s
    assert in_gap([later, early], 1000.0, (1020.0, 1032.0))[-1] is later
    assert in_gap([early, later], 1000.0, (1001.0, 1005.0))[-1] is early
    # No dump inside the gap: the order stays, the last dump is judged.
    assert in_gap([early, later], 1000.0, (1040.0, 1050.0)) == [early, later]
    assert in_gap(None, 1000.0, (0.0, 1.0)) is None
