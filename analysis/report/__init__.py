"""The report: the run report (build: its parts in order; trust and why_blocks: the closed-loop
parts; render: every chart, the sections' included) and the comparison of two runs (compare),
written in the small document model of analysis.document (which the sections use too, so it
lives outside this package: sections -> document <- report, no cycle)."""

from analysis.report.build import ReportFiles, write_report

__all__ = ["ReportFiles", "write_report"]
