"""The report's sections for each kind of sweep, one module each behind one protocol:

- `protocol`: what a section is (`Section`: its scenarios, its table computed once, its charts,
  its blocks) and where it goes (`Place`);
- `registry`: the one list of sections (`SECTIONS`) the report and its charts walk, and how to
  add one;
- `capacity` (open loop, `make bench-slo`), `stalls` (`make bench-stalls`), `clients`
  (`make bench-clients`), `databases` (`make bench-pg`), `threadpool` (`make bench-threadpool`).

Each section reads its decisions from analysis.judge and draws with analysis.plot; the report
(analysis.report) assembles them.
"""
