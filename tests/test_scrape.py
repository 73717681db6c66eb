"""Turning `/metrics` scrapes into a time series and per-cell mechanism figures."""

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from loadtests.scrape import (
    cpu_rows,
    histogram_quantile,
    parse_metrics,
    read_metrics,
    summarize_metrics,
    write_metrics,
)


def exposition(lags: list[float], tokens: float) -> str:
    registry = CollectorRegistry()
    hist = Histogram(
        "lab_event_loop_lag_seconds", "lag", buckets=(0.01, 0.1, 1.0), registry=registry
    )
    for lag in lags:
        hist.observe(lag)
    Gauge("lab_threadpool_tokens_in_use", "t", registry=registry).set(tokens)
    Gauge("lab_event_loop_lag_max_seconds", "m", registry=registry).set(max(lags, default=0))
    Gauge("unrelated_metric", "u", registry=registry).set(1)
    return generate_latest(registry).decode()


def test_parse_keeps_lab_metrics_only() -> None:
    rows = parse_metrics(exposition([0.005], 3), ts=10.0)
    names = {r[1] for r in rows}
    assert "lab_threadpool_tokens_in_use" in names and "unrelated_metric" not in names
    assert (10.0, "lab_event_loop_lag_seconds_bucket", "le=0.01", 1.0) in rows
    assert not any(n.endswith("_created") for n in names)


def test_histogram_quantile_uses_only_the_window() -> None:
    before = parse_metrics(exposition([0.5] * 100, 0), ts=0.0)  # warm-up: all slow
    # In the window: 98 fast, 2 at 0.05 -> p99 falls in the 0.1 bucket, p50 in the 0.01 one.
    after = parse_metrics(exposition([0.5] * 100 + [0.005] * 98 + [0.05] * 2, 0), ts=10.0)
    rows = before + after
    assert histogram_quantile(rows, "lab_event_loop_lag_seconds", 0.5, 0.0, 9.0) == 0.01
    assert histogram_quantile(rows, "lab_event_loop_lag_seconds", 0.99, 0.0, 9.0) == 0.1
    assert histogram_quantile(rows, "lab_event_loop_lag_seconds", 0.99, 20.0, 30.0) is None


def test_summary_takes_peaks_inside_the_window() -> None:
    rows = (
        parse_metrics(exposition([0.001], 40), ts=1.0)  # warm-up, excluded
        + parse_metrics(exposition([0.001, 0.2], 7), ts=5.0)
        + parse_metrics(exposition([0.001, 0.2, 0.003], 5), ts=6.0)
        + parse_metrics(exposition([0.001, 0.2, 0.003], 30), ts=20.0)  # after, excluded
    )
    summary = summarize_metrics(rows, start=2.0, end=6.0)
    assert summary["threadpool_peak_in_use"] == 7
    assert summary["loop_lag_max_ms"] == pytest.approx(200)
    assert summary["loop_lag_p99_ms"] == pytest.approx(1000)
    assert summary["db_pool_peak_checked_out"] is None


def test_series_round_trips_through_csv(tmp_path: Path) -> None:
    rows = parse_metrics(exposition([0.001], 2), ts=3.0) + cpu_rows({"loadgen": [(1.0, 0.5)]})
    write_metrics(tmp_path / "metrics.csv", rows)
    back = read_metrics(tmp_path / "metrics.csv")
    assert sorted(rows) == back
    assert back[0] == (1.0, "cpu_seconds_total", "process=loadgen", 0.5)
    assert math.isfinite(back[-1][3])
