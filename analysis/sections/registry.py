"""Every section of the report, listed once: `SECTIONS`, which the report (analysis.report.build)
and its charts (analysis.report.render) walk. Nothing else names a section.

How to add one (e.g. the probe's), one new module and one line here:

1. Write `analysis/sections/<name>.py` with a class implementing
   analysis.sections.protocol.Section and a module-level `SECTION = <Name>()`:
   - `key`: a short unique name (`"probe"`); its charts are `Rendered.sections[key]`;
   - `place`: `Place.LEAD`, `Place.FINDINGS` or `Place.MECHANISM` (protocol.Place);
   - `reading`: bullets for "How to read these charts" (or `()`);
   - `scenarios(run)`: the scenarios it covers, `[]` when the run has nothing for it (the
     section is then absent: no separate "has a section" test);
   - `table(run, scenarios, decided)`: everything it shows, computed once (a frozen dataclass
     holding frames is the usual shape); take figures over repeats from analysis.judge.repeats
     (`Repeats.of`, `over_repeats`), percentiles as summary.csv holds them (analysis.judge.samples),
     style names from analysis.vocabulary;
   - `charts(table, out_dir)`: draw with analysis.plot functions, write each figure with
     `analysis.plot.charts.save_chart`; return the charts (or `[]`);
   - `blocks(table, charts)`: its Heading, Paragraphs, Tables and Images
     (analysis.document), from the table and the charts given (none when not drawn).
   Decisions that grow large can go to `analysis/judge/<name>.py`, pictures to
   `analysis/plot/<name>.py`, as the sections below do; neither is required.
2. Import it below and add `<name>.SECTION` to `SECTIONS` where it belongs among its place.

`tests/test_analysis_sections.py` checks that a section registered so shows up in the report with
its chart, and nothing else.
"""

from collections.abc import Sequence
from typing import Any

from analysis.document import Block
from analysis.judge.verdict import Verdicts, decide_verdicts
from analysis.load.run import Run
from analysis.sections import (
    abandon,
    capacity,
    clients,
    databases,
    probe,
    servers,
    stalls,
    threadpool,
)
from analysis.sections.protocol import Place, Section, Shown, is_standalone

# In report order within each place (protocol.Place).
SECTIONS: tuple[Section[Any], ...] = (
    probe.SECTION,
    capacity.SECTION,
    stalls.SECTION,
    clients.SECTION,
    servers.SECTION,
    databases.SECTION,
    abandon.SECTION,
    threadpool.SECTION,
)


def show(
    run: Run, decided: Verdicts, sections: Sequence[Section[Any]] | None = None
) -> list[Shown]:
    """Every section the run has something for, with its table computed (once), in registry
    order; `sections` defaults to SECTIONS."""
    out = []
    for section in SECTIONS if sections is None else sections:
        names = section.scenarios(run)
        if names:
            out.append(Shown(section, tuple(names), section.table(run, names, decided)))
            if is_standalone(section):
                # The whole story of this run: no other section (protocol.is_standalone).
                return out[-1:]
    return out


def standalone(shown: Sequence[Shown]) -> bool:
    """Whether the run's report is one standalone section's (a probe run)."""
    return any(is_standalone(s.section) for s in shown)


def at(shown: Sequence[Shown], place: Place) -> list[Shown]:
    """The shown sections of one place, in registry order."""
    return [s for s in shown if s.section.place == place]


def blocks_of(section: Section[Any], run: Run, decided: Verdicts | None = None) -> list[Block]:
    """One section's blocks for `run`, its table computed and no chart drawn ([] when the run
    has nothing for it); `decided` defaults to the run's verdicts."""
    names = section.scenarios(run)
    if not names:
        return []
    decided = decide_verdicts(run.summary) if decided is None else decided
    return section.blocks(section.table(run, names, decided), ())
