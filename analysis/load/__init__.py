"""Reading a run folder: the column specifications (schema), typed loading (run: summary.csv,
capacity.csv, manifest.json, and cell.json through the contract's `CellResult`), what an older
run lacks, derived from what it has (derive), and what it planned but lacks (completeness).
Imports nothing from judge, plot, report or sections."""

from analysis.load.run import (
    CAPACITY_FILE,
    CELL_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    REQUESTS_FILE,
    SUMMARY_FILE,
    Run,
    RunFormatError,
    add_style,
    load_capacity,
    load_cell,
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
    "add_style",
    "load_capacity",
    "load_cell",
    "load_manifest",
    "load_metrics",
    "load_requests",
    "load_run",
    "load_summary",
    "load_window",
    "metric_series",
    "split_rates",
]
