"""Analysis of a results folder (reads files only), grouped by role:

- `analysis.load`: read and type a run folder (summary.csv, manifest.json, per-cell files);
- `analysis.judge`: aggregate over repeats, decide verdicts, check the docs' rules, collect
  warnings;
- `analysis.plot`: styles' colours, plot functions and chart rendering;
- `analysis.report`: the report document (Markdown and HTML) and the comparison of two runs.

Names, outcomes and thresholds of the results contract come from `contract`.
"""
