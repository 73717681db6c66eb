"""Analysis of a results folder: load, aggregate, judge, chart and report (reads files only)."""
