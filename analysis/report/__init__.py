"""The report: a small document model (document), the run report's sections (build, sections,
why_blocks) and the comparison of two runs (compare)."""

from analysis.report.build import ReportFiles, write_report

__all__ = ["ReportFiles", "write_report"]
