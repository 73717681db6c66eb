"""The report: a small document model (document), the run report (build: its parts in order;
trust and why_blocks: the closed-loop parts; render: every chart, the sections' included) and the
comparison of two runs (compare)."""

from analysis.report.build import ReportFiles, write_report

__all__ = ["ReportFiles", "write_report"]
