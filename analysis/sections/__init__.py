"""The report's sections for each kind of sweep, one module each behind one protocol:

- `protocol`: what a section is (`Section`: its scenarios, its table computed once, its charts,
  its blocks) and where it goes (`Place`);
- `registry`: the one list of sections (`SECTIONS`) the report and its charts walk, and how to
  add one;
- one module per section, in the registry's order: `probe` (a run of `sync-async-lab probe`,
  the whole report of such a run), `capacity` (open loop, `make bench-slo`), `stalls`
  (`make bench-stalls`), `clients` (`make bench-clients`), `servers` (`make bench-servers`),
  `databases` (`make bench-pg`), `abandon` (`make bench-abandon`: requests whose client left),
  `threadpool` (`make bench-threadpool`).

Each section reads its decisions from analysis.judge and draws with analysis.plot; the report
(analysis.report) assembles them.
"""
