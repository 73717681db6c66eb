"""The section protocol and its registry, the one vocabulary and the direction of imports in
analysis/ (issue 21): a new kind of sweep is one module and one registry line."""

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from analysis import vocabulary  # noqa: E402
from analysis.document import Block, Heading, Image, Paragraph  # noqa: E402
from analysis.judge.verdict import Verdicts, decide_verdicts  # noqa: E402
from analysis.load import Run, load_run  # noqa: E402
from analysis.plot.charts import Chart, save_chart  # noqa: E402
from analysis.plot.styles import PALETTE  # noqa: E402
from analysis.report import render, write_report  # noqa: E402
from analysis.sections import registry  # noqa: E402
from analysis.sections.protocol import Place, Section  # noqa: E402
from tests.analysis_fixtures import write_run, write_stalls_run  # noqa: E402

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"


# --- a section written only against the protocol -----------------------------------------------


@dataclass(frozen=True)
class CountTable:
    """The toy section's table: cells per scenario."""

    counts: dict[str, int]


class CellCount:
    """A kind of sweep a newcomer might add: how many cells each scenario ran."""

    key = "cell-count"
    place = Place.FINDINGS
    reading = ("Cell count chart: one bar per scenario.",)
    tables_computed = 0

    def scenarios(self, run: Run) -> list[str]:
        return sorted({str(s) for s in run.summary["scenario"] if s == "chat"})

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> CountTable:
        CellCount.tables_computed += 1
        part = run.summary[run.summary["scenario"].isin(scenarios)]
        return CountTable({s: int((part["scenario"] == s).sum()) for s in scenarios})

    def charts(self, table: CountTable, out_dir: Path) -> list[Chart]:
        fig, ax = plt.subplots()
        ax.bar(list(table.counts), list(table.counts.values()))
        ax.set_title("cells per scenario")
        return [save_chart(fig, out_dir / "cell_count.png", "Cells per scenario", "", "Count.")]

    def blocks(self, table: CountTable, charts: Sequence[Chart]) -> list[Block]:
        text = ", ".join(f"`{s}` {n} cells" for s, n in table.counts.items())
        return [
            Heading("Cells per scenario"),
            Paragraph(text),
            *(Image(c.path, c.title, c.caption) for c in charts),
        ]


def test_a_section_registered_in_one_line_is_in_the_report_with_its_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy: Section[CountTable] = CellCount()
    monkeypatch.setattr(registry, "SECTIONS", (*registry.SECTIONS, toy))
    # Only the sections' charts are drawn (the per-scenario ones are tested elsewhere).
    monkeypatch.setattr(render, "scenario_charts", lambda run, decided, out: ([], []))
    CellCount.tables_computed = 0
    files = write_report(write_run(tmp_path, raw=False), reference=None)
    md = files.markdown.read_text()
    # Its blocks in its place (after the latency table, before the observer effect), its chart
    # drawn and linked, its reading bullet listed: nothing else was edited.
    assert md.index("## Latency at the compared load") < md.index("## Cells per scenario")
    assert md.index("## Cells per scenario") < md.index("## Observer effect")
    assert "`chat` 28 cells" in md  # 4 styles x 3 loads x 2 repeats, and 4 in the `noobs` arm
    assert "](charts/cell_count.png)" in md and (
        files.markdown.parent / "charts/cell_count.png"
    ) in (files.charts)
    assert "- Cell count chart: one bar per scenario." in md
    # Its table was computed once, for the text and the chart both.
    assert CellCount.tables_computed == 1


def test_a_section_with_no_scenarios_is_absent(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, raw=False))
    decided = decide_verdicts(run.summary)
    shown = registry.show(run, decided)
    # The fixture run has an observer arm only: no sweep section has anything to show.
    assert shown == []
    stalls = load_run(write_stalls_run(tmp_path))
    keys = [s.key for s in registry.show(stalls, decide_verdicts(stalls.summary))]
    # In registry order; `def` with httpx and httpx2 on chat_stream is a client comparison too.
    assert keys == ["stalls", "clients"]


def test_the_registry_names_each_section_once() -> None:
    keys = [s.key for s in registry.SECTIONS]
    assert len(keys) == len(set(keys))
    # The sweeps of `make bench-*`, in report order (another section may sit among them).
    known = ["capacity", "stalls", "clients", "databases", "threadpool"]
    assert [k for k in keys if k in known] == known
    for section in registry.SECTIONS:
        assert isinstance(section.place, Place)
        assert all(isinstance(line, str) for line in section.reading)


# --- one vocabulary ------------------------------------------------------------------------------


def test_every_style_has_one_colour_one_label_and_one_wording() -> None:
    assert set(PALETTE) == set(vocabulary.STYLES)
    assert len(set(PALETTE.values())) == len(PALETTE)
    assert [vocabulary.label(s) for s in vocabulary.STYLES] == [
        "sync: def",
        "sync: def + httpx2",
        "async: async def",
        "async: async def + httpx2",
        "async: async def + aiohttp",
        "blocking: async def + sync lib",
    ]
    # The text's words and the legend's are the same words.
    for variant in vocabulary.VARIANTS:
        plain = vocabulary.variant_words(variant).replace("`", "")
        assert vocabulary.label(variant) == f"{variant}: {plain}"
    assert vocabulary.style_words("blocking", "httpx") == "`async def` + sync lib"
    assert vocabulary.style_words("async", "httpx") == "`async def` + httpx"
    assert vocabulary.style_words("sync", "httpx", always_client=True) == "`def` + httpx"
    assert vocabulary.split_style("async (aiohttp)") == ("async", "aiohttp")
    assert vocabulary.BASELINE == "sync" and vocabulary.THREADED == "sync"


def test_no_style_wording_is_written_outside_the_vocabulary() -> None:
    words = ("blocking-in-async", "async def + sync lib", "`async def` + sync lib")
    found = [
        (path.relative_to(ANALYSIS).as_posix(), w)
        for path in ANALYSIS.rglob("*.py")
        if path.name != "vocabulary.py"
        for w in words
        if w in _code(path)
    ]
    assert found == []


def _code(path: Path) -> str:
    """A module's string constants, docstrings and comments aside."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return "\n".join(
        str(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    )


# --- imports point one way ------------------------------------------------------------------------

# What each part of analysis/ may import from analysis/ (besides itself). The document model is
# its own module: sections once imported `report.document`, and a section imported before the
# report met the report half-built (report -> registry -> sections -> report).
ALLOWED: dict[str, frozenset[str]] = {
    "fmt": frozenset(),
    "vocabulary": frozenset({"fmt"}),
    "document": frozenset(),
    "load": frozenset({"fmt", "vocabulary"}),
    "judge": frozenset({"fmt", "vocabulary", "load"}),
    "plot": frozenset({"fmt", "vocabulary", "load", "judge"}),
    "sections": frozenset({"fmt", "vocabulary", "document", "load", "judge", "plot"}),
    "report": frozenset({"fmt", "vocabulary", "document", "load", "judge", "plot", "sections"}),
}


def _targets(path: Path) -> set[str]:
    """The analysis modules a file imports, without the `analysis.` prefix."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "analysis":
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("analysis."):
            out.add(str(node.module).removeprefix("analysis."))
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("analysis.") for a in node.names if "analysis." in a.name}
    return out


def _allowed(part: str, target: str) -> bool:
    first = target.split(".")[0]
    if first == part or first in ALLOWED[part]:
        return True
    return any(target == a or target.startswith(f"{a}.") for a in ALLOWED[part] if "." in a)


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_imports_point_load_judge_then_plot_sections_report(part: str) -> None:
    paths = [ANALYSIS / f"{part}.py"] if (ANALYSIS / f"{part}.py").exists() else []
    paths += sorted((ANALYSIS / part).glob("*.py")) if (ANALYSIS / part).is_dir() else []
    assert paths
    wrong = [
        f"{path.relative_to(ANALYSIS)} imports analysis.{target}"
        for path in paths
        for target in sorted(_targets(path))
        if not _allowed(part, target)
    ]
    assert wrong == []
