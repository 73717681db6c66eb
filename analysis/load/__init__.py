"""Reading a run folder: the column specifications (schema), typed loading (run) and what an
older run lacks, derived from what it has (derive)."""

from analysis.load.run import (
    CAPACITY_FILE,
    CELL_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    REQUESTS_FILE,
    SUMMARY_FILE,
    Run,
    RunFormatError,
    load_capacity,
    load_manifest,
    load_metrics,
    load_requests,
    load_run,
    load_summary,
    load_window,
    metric_series,
    split_rates,
)

__all__ = [
    "CAPACITY_FILE",
    "CELL_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "REQUESTS_FILE",
    "SUMMARY_FILE",
    "Run",
    "RunFormatError",
    "load_capacity",
    "load_manifest",
    "load_metrics",
    "load_requests",
    "load_run",
    "load_summary",
    "load_window",
    "metric_series",
    "split_rates",
]
