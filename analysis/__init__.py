"""Analysis of a results folder (reads files only), grouped by role; imports point one way,
each layer using only those above it:

- `analysis.vocabulary`, `analysis.fmt`: the words for styles, clients, arms and the baseline,
  and how numbers are written;
- `analysis.load`: read and type a run folder (summary.csv, capacity.csv, manifest.json, and
  cell.json through the contract's `CellResult`);
- `analysis.judge`: decide from the loaded data: the repeat statistic, verdicts, the docs' rules,
  each sweep's table, warnings (pure functions of frames: no files, no plots);
- `analysis.plot`: styles' colours, plot functions drawing on a given axes, and the per-scenario
  charts;
- `analysis.sections`: one module per kind of sweep behind one protocol, listed once in
  `analysis.sections.registry`;
- `analysis.report`: the document model, the run report (which walks the registry) and the
  comparison of two runs.

Names, outcomes, thresholds and the sample rule of the results contract come from `contract`.
"""
