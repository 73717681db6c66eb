"""Summary rows from raw per-request files: exact percentiles, the window, validity."""

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadtests.summary import (
    SUMMARY_COLUMNS,
    load_requests,
    percentiles,
    summarize_requests,
    summary_row,
    validity,
    write_summary,
)

LABEL = "POST /v1/chat/completions"


def write_rows(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ("ts", "kind", "name", "latency_ms", "ok", "app_ms", "upstream_ms", "db_ms")
        )
        writer.writerows(rows)
    return path


@pytest.fixture
def known(tmp_path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """1000 requests spread over [100, 110) s with seeded latencies, plus noise outside."""
    rng = np.random.default_rng(7)
    latencies = rng.lognormal(3, 1, 1000).round(3)
    ts = np.linspace(100, 109.99, 1000)
    ok = np.ones(1000, dtype=int)
    ok[::50] = 0  # 20 failures
    rows = [
        (t, "request", LABEL, lat, o, lat, lat - 5, "")
        for t, lat, o in zip(ts, latencies, ok, strict=True)
    ]
    # Warm-up and after-window rows must not count.
    rows += [(99.5, "request", LABEL, 99999.0, 1), (110.0, "request", LABEL, 88888.0, 1)]
    rows += [(101.0, "ttft", LABEL, 40.0, 1), (101.0, "itl", LABEL, 10.0, 1)]
    rows += [(102.0, "itl", LABEL, 12.0, 1), (103.0, "probe", "GET /hello", 3.0, 1)]
    frame = load_requests(write_rows(tmp_path / "requests.csv", rows))
    return frame, latencies


def test_percentiles_are_exact(known: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, latencies = known
    got = summarize_requests(frame, 100.0, 110.0)
    # Failed requests are reported apart: the latency percentiles are the successful ones'.
    ok = np.ones(len(latencies), dtype=bool)
    ok[::50] = False
    expected = np.percentile(latencies[ok], [50, 90, 95, 99, 100])
    assert got["error_max_ms"] == pytest.approx(latencies[~ok].max())
    assert [got[k] for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")] == pytest.approx(
        expected, abs=1e-9
    )


def test_window_counts_and_rps(known: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = known
    got = summarize_requests(frame, 100.0, 110.0)
    assert got["requests"] == 1000
    assert got["failures"] == 20
    assert got["rps"] == pytest.approx(980 / 10)


def test_overhead_from_server_timing(known: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = known
    got = summarize_requests(frame, 100.0, 110.0)
    # app - upstream - db = 5 ms for every timed request.
    assert got["overhead_p50_ms"] == pytest.approx(5.0) and got["overhead_p99_ms"] == pytest.approx(
        5.0
    )


def test_stream_and_probe_kinds_are_apart(known: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = known
    got = summarize_requests(frame, 100.0, 110.0)
    assert got["ttft_p50_ms"] == 40.0
    assert got["itl_p50_ms"] == pytest.approx(11.0)
    assert got["probe_requests"] == 1
    assert got["probe_max_ms"] == 3.0


def test_empty_window(known: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame, _ = known
    got = summarize_requests(frame, 200.0, 210.0)
    assert got["requests"] == 0 and got["rps"] == 0
    assert got["p99_ms"] is None and got["ttft_p50_ms"] is None and got["probe_requests"] is None


def test_percentiles_of_nothing() -> None:
    assert percentiles([], (50, 99)) == [None, None]
    assert percentiles([1.0, 2.0, 3.0, 4.0], (50,)) == [2.5]


@pytest.mark.parametrize(
    ("loadgen", "upstream", "spawned", "valid", "reason"),
    [
        pytest.param(40.0, 30.0, 50, True, "", id="fine"),
        pytest.param(93.0, None, 50, False, "load generator at 93%", id="loadgen-saturated"),
        pytest.param(20.0, 92.0, 50, False, "upstream at 92%", id="upstream-saturated"),
        pytest.param(60.0, 40.0, 50, False, "load core at 100%", id="shared-core-full"),
        pytest.param(40.0, 30.0, 12, False, "reached 12 of 50 users", id="users-not-reached"),
        pytest.param(None, None, 50, False, "not measured", id="no-cpu"),
    ],
)
def test_validity(
    loadgen: float | None, upstream: float | None, spawned: int, valid: bool, reason: str
) -> None:
    ok, why = validity(loadgen, upstream, spawned, 50, shared_load_core=True)
    assert ok is valid
    assert reason in why


def test_validity_with_separate_load_cores() -> None:
    assert validity(60.0, 40.0, 5, 5, shared_load_core=False) == (True, "")


def cell_doc(cell_id: str, **extra: object) -> dict:
    return {
        "cell_id": cell_id,
        "scenario": "chat",
        "variant": "sync",
        "client": "httpx",
        "users": 10,
        "repeat": 1,
        "status": "ok",
        "reason": "",
        "valid": True,
        "invalid_reason": "",
        "cut_off": 0,
        "settings": {"duration_s": 2.0, "warmup_s": 1.0, "threadpool_tokens": 40},
        "cpu": {"loadgen_pct": 10.0, "upstream_pct": 5.0, "server_pct": 50.0},
        "metrics": {"requests": 10, "failures": 0, "rps": 5.0, "p50_ms": 1.0},
        **extra,
    }


def test_summary_csv_follows_the_contract(tmp_path: Path) -> None:
    for cell_id, extra in (
        ("b", {}),
        ("a", {"status": "failed", "reason": "server crashed", "metrics": {}, "cut_off": None}),
    ):
        (tmp_path / cell_id).mkdir()
        (tmp_path / cell_id / "cell.json").write_text(json.dumps(cell_doc(cell_id, **extra)))
    path = write_summary(tmp_path, order=["b", "a"])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(SUMMARY_COLUMNS)
    assert [r["cell_id"] for r in rows] == ["b", "a"]
    assert rows[0]["requests"] == "10" and rows[0]["valid"] == "True"
    assert rows[1]["requests"] == "" and rows[1]["reason"] == "server crashed"
    assert rows[0]["ttft_p50_ms"] == ""


def test_summary_row_keeps_every_column() -> None:
    row = summary_row(cell_doc("x"))
    assert list(row) == list(SUMMARY_COLUMNS)
    assert row["server_cpu_pct"] == 50.0 and row["duration_s"] == 2.0


def test_probe_counts_when_in_flight_during_the_window() -> None:
    rows = pd.DataFrame(
        [
            (90.0, "probe", "GET /hello", 15_000.0, 1),  # started before, ends inside: counts
            (95.0, "probe", "GET /hello", 1_000.0, 1),  # over before the window: left out
            (104.0, "probe", "GET /hello", 2.0, 1),
        ],
        columns=["ts", "kind", "name", "latency_ms", "ok"],
    )
    got = summarize_requests(rows, 100.0, 110.0)
    assert got["probe_requests"] == 2
    assert got["probe_max_ms"] == 15_000.0
