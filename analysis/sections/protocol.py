"""What a section of the report is: the protocol every kind of sweep implements once.

A section (the open-loop capacity, the `def` stalls and their fixes, the HTTP clients, SQLite vs
PostgreSQL, the threadpool sweep, ...) is one object with a `key`, a `place` in the report, its
`reading` (bullets for "How to read these charts") and four methods, called in this order by
analysis.sections.registry.show and analysis.report:

1. `scenarios(run)`: which scenarios of the run it covers; none means the report has no such
   section (there is no separate "has a section" test).
2. `table(run, scenarios, decided)`: everything the section shows, computed once from the run
   (and the verdicts, for their noise): the one source of its text and its charts.
3. `charts(table, out_dir)`: draws its charts from the table into `out_dir` (analysis.plot's
   functions do the drawing; `analysis.plot.charts.save_chart` writes a figure).
4. `blocks(table, charts)`: its part of the report, from the table and the charts drawn (none
   when charts were not drawn).

Each method is pure but for `charts`, which writes files; none reads another section's table.

Two optional parts (`standalone`, `files`), which only the probe's section has so far:
- `standalone = True`: the section is the whole story of the runs it covers (a probe run's
  cells are routes of one app, not styles of the lab's scenarios), so the report leaves out the
  lab's verdicts, its per-scenario charts and every other section for such a run;
- `files(table, out_dir)`: data files it writes beside the report (the probe's routes.csv).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from analysis.document import Block
from analysis.judge.verdict import Verdicts
from analysis.load.run import Run
from analysis.plot.charts import Chart

Table = TypeVar("Table")


class Place(Enum):
    """Where in the report a section goes; the registry's order decides within a place."""

    # Before everything closed-loop (a run of rate cells only has nothing else).
    LEAD = "lead"
    # After the verdicts and the latency table: what else the run measured.
    FINDINGS = "findings"
    # After "Why: what the server saw": the sections that explain a mechanism.
    MECHANISM = "mechanism"


class Section(Protocol[Table]):
    """One kind of sweep in the report (see the module's docstring for the order of calls)."""

    # Names the section's charts in analysis.report.render.Rendered; unique in the registry.
    key: str
    place: Place
    # How to read its charts: bullets the report adds to "How to read these charts" when it
    # shows the section (none: its captions say enough).
    reading: Sequence[str]

    def scenarios(self, run: Run) -> list[str]:
        """The scenarios of `run` this section covers, in the order it shows them; [] = none."""
        ...

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> Table:
        """Everything the section shows, computed once."""
        ...

    def charts(self, table: Table, out_dir: Path) -> list[Chart]:
        """Draw the section's charts from its table into `out_dir`."""
        ...

    def blocks(self, table: Table, charts: Sequence[Chart]) -> list[Block]:
        """The section's part of the report."""
        ...


def is_standalone(section: Section[Any]) -> bool:
    """Whether a section is the whole story of its run (see the module's docstring)."""
    return bool(getattr(section, "standalone", False))


def files_of(shown: "Shown", out_dir: Path) -> list[Path]:
    """The data files a shown section writes beside the report (most write none)."""
    write = getattr(shown.section, "files", None)
    return list(write(shown.table, out_dir)) if write is not None else []


@dataclass(frozen=True)
class Shown:
    """A section as one run shows it: the scenarios it covers and its table."""

    section: Section[Any]
    scenarios: tuple[str, ...]
    table: Any

    @property
    def key(self) -> str:
        """The section's key."""
        return self.section.key

    def charts(self, out_dir: Path) -> list[Chart]:
        """The section's charts, drawn from its table."""
        return self.section.charts(self.table, out_dir)

    def blocks(self, charts: Sequence[Chart] = ()) -> list[Block]:
        """The section's blocks, from its table and the charts drawn."""
        return self.section.blocks(self.table, charts)
