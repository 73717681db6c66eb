"""Every chart of a run's report: the per-scenario charts (analysis.plot.charts) and each shown
section's (analysis.sections.registry), drawn from the tables the sections computed."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.judge.verdict import Verdicts
from analysis.load.run import Run
from analysis.plot.charts import Chart, scenario_charts
from analysis.sections.protocol import Shown, is_standalone


@dataclass(frozen=True)
class Rendered:
    """Charts written: the per-scenario and overview ones (the report's "Charts"), each section's
    by its key, and notes on charts skipped (e.g. raw per-request files absent)."""

    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: Mapping[str, list[Chart]] = field(default_factory=dict)

    def of(self, key: str) -> list[Chart]:
        """One section's charts (none when it drew none, or nothing was drawn)."""
        return list(self.sections.get(key, []))

    def all(self) -> list[Chart]:
        """Every chart written."""
        return [*self.charts, *(c for charts in self.sections.values() for c in charts)]


# A report without charts (its text only).
NOTHING_DRAWN = Rendered()


def render_all(run: Run, decided: Verdicts, shown: Sequence[Shown], out_dir: Path) -> Rendered:
    """Write every chart of `run` under `out_dir` and say which were skipped and why."""
    if any(is_standalone(s.section) for s in shown):
        charts, notes = [], []  # the section is the run's whole story (a probe run)
    else:
        charts, notes = scenario_charts(run, decided, out_dir)
    return Rendered(charts, notes, {s.key: s.charts(out_dir) for s in shown})
