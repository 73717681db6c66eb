"""Judging a run, the one meaning of "judge" in the analysis: deciding from the loaded data.
Cells and their outcomes (cells), the repeat statistic (repeats), selection and aggregation
(transform), reading percentiles under the sample rule (samples), noise from repeats (noise),
verdicts (verdict: `decide_verdicts`), the docs' rules, the server's mechanisms (why), the
machine's and upstream's steadiness (quiet), the observer effect, every warning (caveats), and
each sweep's table (capacity, stalls, clients, databases and db_verdict, sweep). Pure functions
of data frames: no files, no plots."""
