"""The method's rules on synthetic data: outcomes, Little's law, gaps, stalls, matrix checks."""

import pandas as pd
import pytest

from contract import CENSORED, ERROR, OK, TIMEOUT
from loadtests.assess import stall_evidence, upstream_drift
from loadtests.context import RunContext
from loadtests.matrix import Cell, MatrixSpec
from loadtests.plan import server_env
from loadtests.process import Pinning
from loadtests.summary import completion_gaps, little_ratio, summarize_requests

LABEL = "GET /hello"


def closed_loop(
    users: int, latency_ms: float, seconds: float, start: float = 100.0
) -> pd.DataFrame:
    """Rows of `users` closed-loop users, each sending back to back with a fixed latency."""
    rows = []
    for _ in range(users):
        t = start
        while t < start + seconds:
            rows.append((t, "request", LABEL, latency_ms, 1, OK))
            t += latency_ms / 1000
    return pd.DataFrame(rows, columns=["ts", "kind", "name", "latency_ms", "ok", "outcome"])


def test_littles_law_holds_for_a_steady_closed_loop() -> None:
    rows = closed_loop(users=10, latency_ms=50, seconds=10)
    got = summarize_requests(rows, 101.0, 109.0, users=10)
    assert got["little_ratio"] == pytest.approx(1.0, abs=0.02)
    assert got["steady"] is True


def test_littles_law_flags_a_cell_that_drops_users() -> None:
    # Claimed 40 users, but only 10 were ever in the system (the rest dropped out of the rows).
    rows = closed_loop(users=10, latency_ms=50, seconds=10)
    got = summarize_requests(rows, 101.0, 109.0, users=40)
    assert got["little_ratio"] == pytest.approx(4.0, rel=0.02)
    assert got["steady"] is False


def test_little_ratio_needs_data() -> None:
    assert little_ratio(None, 10, 1.0, pd.Series([1.0])) is None
    assert little_ratio(5, 0, 0.0, pd.Series(dtype=float)) is None
    # Users present, nothing started: no ratio (JSON has no infinity), and not steady.
    assert little_ratio(5, 0, 1.0, pd.Series(dtype=float)) is None


def test_every_outcome_is_counted_and_failures_are_apart() -> None:
    rows = pd.DataFrame(
        [
            (100.0, "request", LABEL, 10.0, 1, OK),
            (100.1, "request", LABEL, 20.0, 1, OK),
            (100.2, "request", LABEL, 5000.0, 0, ERROR),
            (100.3, "request", LABEL, 9000.0, 0, TIMEOUT),
            (100.4, "request", LABEL, 3000.0, 0, CENSORED),
        ],
        columns=["ts", "kind", "name", "latency_ms", "ok", "outcome"],
    )
    got = summarize_requests(rows, 100.0, 101.0, cell_end=103.4)
    assert (got["requests"], got["ok"], got["errors"], got["timeouts"], got["censored"]) == (
        5,
        2,
        1,
        1,
        1,
    )
    assert got["failures"] == 2 and got["rps"] == 2.0
    # Latency: ok and censored (at its lower bound); the failures' 5 s and 9 s stay out.
    assert got["max_ms"] == 3000.0 and got["censored_min_ms"] == 3000.0
    assert got["error_max_ms"] == 9000.0
    assert got["in_flight_at_end"] == 1


def test_completion_gaps_count_the_wait_for_censored_requests() -> None:
    rows = pd.DataFrame(
        [
            (100.0, "request", LABEL, 100.0, 1, OK),  # done at 100.1
            (100.0, "request", LABEL, 1900.0, 1, OK),  # done at 101.9
            (100.5, "request", LABEL, 9000.0, 0, CENSORED),
        ],
        columns=["ts", "kind", "name", "latency_ms", "ok", "outcome"],
    )
    gaps = completion_gaps(rows, 100.0, 115.0)
    assert gaps.since_last_s == pytest.approx(13.1)
    assert gaps.longest_s == pytest.approx(13.1)
    assert gaps.bounds == pytest.approx((101.9, 115.0))
    assert gaps.in_flight == 1
    # Without a censored request the cell's end is no gap: nothing was waiting.
    gaps = completion_gaps(rows[rows["outcome"] == OK], 100.0, 115.0)
    assert gaps.longest_s == pytest.approx(1.8)


def test_a_gap_ended_by_errors_says_so() -> None:
    # 3 requests wait 10 s for a pool and fail together (a stall that ends in timeouts).
    rows = pd.DataFrame(
        [(100.0, "request", LABEL, 50.0, 1, OK)]
        + [(100.1, "request", LABEL, 10_000.0, 0, ERROR)] * 3,
        columns=["ts", "kind", "name", "latency_ms", "ok", "outcome"],
    )
    gaps = completion_gaps(rows, 100.0, 111.0)
    assert gaps.longest_s == pytest.approx(10.05)
    assert (gaps.in_flight, gaps.ended_by_errors) == (3, 3)


def test_no_request_in_the_window_is_not_steady() -> None:
    rows = pd.DataFrame(
        [(99.0, "request", LABEL, 20_000.0, 0, CENSORED)],
        columns=["ts", "kind", "name", "latency_ms", "ok", "outcome"],
    )
    got = summarize_requests(rows, 100.0, 106.0, users=200, cell_end=119.0)
    assert got["requests"] == 0 and got["steady"] is False
    assert got["gap_max_s"] == pytest.approx(19.0)
    # It waited through the whole window: a user the window's numbers never saw.
    assert got["starved"] == 1
    # Measured from the cell's start, the gap includes the warm-up the stall began in.
    got = summarize_requests(rows, 100.0, 106.0, users=200, cell_end=119.0, cell_start=95.0)
    assert got["gap_max_s"] == pytest.approx(24.0)


def test_stall_threshold_must_exceed_every_server_timeout() -> None:
    with pytest.raises(ValueError, match="must exceed every server timeout"):
        MatrixSpec(stall_s=20, grace_s=40)  # the DB pool times out at 30 s by default
    with pytest.raises(ValueError, match="must exceed every server timeout"):
        MatrixSpec(stall_s=12, grace_s=20, server_env={"db_pool_timeout_s": 11})
    MatrixSpec(stall_s=12, grace_s=20, server_env={"db_pool_timeout_s": 10})
    with pytest.raises(ValueError, match="no stall seen"):
        MatrixSpec(stall_s=35, grace_s=20)


def test_unknown_server_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown server settings"):
        MatrixSpec(server_env={"db_pool_timeout": 10})
    with pytest.raises(ValueError, match="unknown server settings"):
        MatrixSpec(
            arms=[
                {
                    "name": "x",
                    "env": {"obsrve": False},
                    "scenarios": ["chat"],
                    "variants": ["sync"],
                    "users": [5],
                }
            ]
        )


def test_arms_and_skips_shape_the_cells(tmp_path) -> None:
    spec = MatrixSpec(
        scenarios=["chat", "hello"],
        variants=["sync", "blocking"],
        users=[10, 200],
        repeats=2,
        skip=["hello/blocking", "chat/blocking/200"],
        arms=[
            {
                "name": "noobs",
                "env": {"observe": False},
                "scenarios": ["chat"],
                "variants": ["sync"],
                "users": [200],
            }
        ],
    )
    ids = [c.cell_id for c in spec.cells()]
    assert "hello__blocking-none__u010__r1" not in ids
    assert "chat__blocking-httpx__u200__r1" not in ids
    assert "chat__blocking-httpx__u010__r1" in ids
    assert ids.count("chat__sync-httpx__u200__noobs__r1") == 1
    assert "chat__sync-httpx__u200__noobs__r2" in ids
    ctx = RunContext(out=tmp_path, pinning=Pinning(None, None), upstream_url="http://u/v1")
    arm_cell = Cell("chat", "sync", "httpx", 200, 1, arm="noobs")
    assert server_env(arm_cell, spec, ctx)["LAB_OBSERVE"] == "false"
    assert "LAB_OBSERVE" not in server_env(Cell("chat", "sync", "httpx", 200, 1), spec, ctx)
    with pytest.raises(ValueError, match="skip"):
        MatrixSpec(skip=["chat"])


def test_stall_evidence_names_the_gauges() -> None:
    text = stall_evidence(
        14.2,
        180,
        2.0,
        {
            "threadpool_peak_in_use": 40,
            "threadpool_peak_waiting": 160,
            "db_pool_peak_checked_out": 15,
        },
        40,
    )
    assert text == (
        "no completion for 14.2 s with 180 in flight; server CPU 2%; "
        "threadpool 40/40 in use, 160 waiting; db pool 15 checked out"
    )
    assert stall_evidence(10.0, 3, None, {}, 40, ended_by_errors=3).endswith("ended by 3 errors")


def test_upstream_drift() -> None:
    delta = {"requests": 10, "served_ms_sum": 580.0}
    assert upstream_drift(delta, 50.0) == {"upstream_served_ms": 58.0, "upstream_drift_ms": 8.0}
    # With jitter, what the mock was asked for is the reference, not the nominal latency.
    jittered = {**delta, "configured_ms_sum": 550.0}
    assert upstream_drift(jittered, 50.0)["upstream_drift_ms"] == 3.0
    assert upstream_drift(None, 50.0)["upstream_served_ms"] is None
