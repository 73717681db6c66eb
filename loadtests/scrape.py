"""Scrape the server's `/metrics` once a second during a cell, and summarize the series.

The series lands in the cell's `metrics.csv` (`ts, metric, labels, value`), with the CPU
seconds of the load generator, upstream and server sampled by psutil alongside.
"""

import csv
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

KEPT_PREFIXES = ("lab_", "process_cpu_seconds", "process_resident_memory_bytes")
COLUMNS = ("ts", "metric", "labels", "value")

Row = tuple[float, str, str, float]


def parse_metrics(text: str, ts: float) -> list[Row]:
    """The kept samples of one scrape as rows; labels written `k=v;k=v`."""
    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(KEPT_PREFIXES) and not sample.name.endswith("_created"):
                labels = ";".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                rows.append((ts, sample.name, labels, float(sample.value)))
    return rows


@dataclass
class MetricsScraper:
    """Scrapes `url` every `interval_s` in a thread while entered; a failed scrape is skipped."""

    url: str
    interval_s: float = 1.0
    timeout_s: float = 5.0
    rows: list[Row] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while True:
                ts = time.time()
                try:
                    self.rows.extend(parse_metrics(client.get(self.url).text, ts))
                except (httpx.HTTPError, ValueError):
                    # A blocked loop answers late or not at all; its lag shows in later scrapes.
                    self.failures += 1
                if self._stop.wait(max(self.interval_s - (time.time() - ts), 0.0)):
                    return

    def __enter__(self) -> "MetricsScraper":
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1)


def cpu_rows(samples: dict[str, list[tuple[float, float]]]) -> list[Row]:
    """psutil CPU samples `(ts, cpu seconds)` per process name as metric rows."""
    return [
        (ts, "cpu_seconds_total", f"process={name}", cpu)
        for name, series in samples.items()
        for ts, cpu in series
    ]


def write_metrics(path: Path, rows: Iterable[Row]) -> None:
    """Write the series sorted by time."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(sorted(rows))


def read_metrics(path: Path) -> list[Row]:
    """Read a `metrics.csv` back."""
    with path.open(newline="") as f:
        return [
            (float(r["ts"]), r["metric"], r["labels"], float(r["value"])) for r in csv.DictReader(f)
        ]


def _series(rows: list[Row], metric: str, labels: str = "") -> list[tuple[float, float]]:
    return [(ts, v) for ts, m, lab, v in rows if m == metric and lab == labels]


def _peak(rows: list[Row], metric: str, start: float, end: float, labels: str = "") -> float | None:
    # Gauges hold the peak of the second before the scrape, so one scrape past `end` belongs in.
    values = [v for ts, v in _series(rows, metric, labels) if start < ts <= end + 1.5]
    return max(values) if values else None


def histogram_quantile(
    rows: list[Row], metric: str, q: float, start: float, end: float
) -> float | None:
    """The `q` quantile of a histogram's observations between two times, as a bucket bound."""
    buckets: dict[float, list[tuple[float, float]]] = {}
    for ts, m, labels, v in rows:
        if m == f"{metric}_bucket":
            le = dict(p.split("=", 1) for p in labels.split(";") if p)["le"]
            buckets.setdefault(float(le), []).append((ts, v))

    def at(series: list[tuple[float, float]], t: float) -> float:
        before = [v for ts, v in series if ts <= t]
        return before[-1] if before else 0.0

    deltas = {le: at(s, end + 1.5) - at(s, start) for le, s in sorted(buckets.items())}
    total = deltas.get(math.inf, 0.0)
    if total <= 0:
        return None
    return next(le for le, count in deltas.items() if count >= q * total)


def summarize_metrics(rows: list[Row], start: float, end: float) -> dict[str, Any]:
    """The mechanism columns of summary.csv for one cell's window."""
    lag_max = _peak(rows, "lab_event_loop_lag_max_seconds", start, end)
    lag_p99 = histogram_quantile(rows, "lab_event_loop_lag_seconds", 0.99, start, end)
    rss = _peak(rows, "process_resident_memory_bytes", start, end)

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 3)

    return {
        "loop_lag_max_ms": ms(lag_max),
        "loop_lag_p99_ms": ms(lag_p99) if lag_p99 != math.inf else ms(lag_max),
        "threadpool_peak_in_use": _peak(rows, "lab_threadpool_tokens_in_use", start, end),
        "threadpool_peak_waiting": _peak(rows, "lab_threadpool_waiting", start, end),
        "http_pool_peak_active": _peak(
            rows, "lab_http_pool_connections", start, end, "state=active"
        ),
        "http_pool_peak_waiting": _peak(
            rows, "lab_http_pool_connections", start, end, "state=waiting"
        ),
        "db_pool_peak_checked_out": _peak(rows, "lab_db_pool_checked_out", start, end),
        "server_rss_peak_mb": None if rss is None else round(rss / 2**20, 1),
    }
