"""Judging a run: cells and their outcomes (cells), aggregation over repeats (transform), the
sample-count rule (samples), noise from repeats (noise), verdicts, the docs' rules, the server's
mechanisms (why), the machine's and upstream's steadiness (quiet), the observer effect, the
threadpool sweep and every warning (caveats). Pure functions of data frames: no files, no plots."""
