"""Every committed reference run (each folder with a manifest.json under results/reference/,
found by glob, so a new one is checked without being listed) still loads, renders and
reproduces the verdicts its committed report.md records: what `make report RUN=<it>` gives.

"Its verdicts", per part of the report, parsed from both the committed report.md and the one
rendered now (the text only: drawing every chart of every run would take ~40 s; two runs are
drawn in full, the two cheapest that draw section charts, a stalls chart and hockey sticks):

- closed-loop verdicts (every run with closed-loop cells): the "Verdicts" table's scenario,
  users, winner and lead (median ratio and repeat interval);
- "`def` stalls and deadlocks": each scenario's advice (the default's stalls, the fixes that
  never stalled, fastest first, the ones that still stall);
- "Which HTTP client": each scenario's sentence (the fastest pair, and per style whether a client
  changed throughput beyond the noise);
- "SQLite vs PostgreSQL": each scenario's answer to "does the verdict change?" and the leading
  style and driver on each database (the sentence up to "On SQLite:");
- "Threadpool sweep": per scenario and load, the token count with the best throughput and the
  share of `def`'s gap more tokens closed;
- "Capacity at the SLO": per scenario, each style's capacity, first failing rate and why, bound,
  ratio to `def` and repeats, in style order. The style's name is compared in today's words:
  "blocking-in-async" is written `` `async def` + sync lib `` since the analysis names each
  style one way (analysis.vocabulary);
- "Which ASGI server" (servers/): each scenario x server's winner;
- "Requests whose client left" (abandon/): each scenario's table, every figure per style x arm;
- a probe run's first table (probe/, probe-quick/): each route's finding and the line to change;
- runs without a report.md have their expectations here: slo/earlier-a and earlier-b the
  capacities README.md quotes for them, distributed/ its Verdicts rows.
"""

import re
from pathlib import Path

import pytest

from analysis.__main__ import main
from analysis.report.build import write_report
from analysis.vocabulary import BLOCKING, variant_words

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference"


def reference_runs() -> tuple[str, ...]:
    """Every committed run: each folder under results/reference/ (itself included, as "") with
    a manifest.json, by its path from there, so a new one cannot be left out."""
    found = {m.parent.relative_to(REFERENCE).as_posix() for m in REFERENCE.rglob("manifest.json")}
    return tuple(sorted("" if name == "." else name for name in found))


RUNS = reference_runs()
# A run with a committed report.md reproduces its verdicts; one without has its expectations
# below (README_CAPACITIES, VERDICTS_WITHOUT_REPORT), or the test asking for them fails.
WITH_REPORT = tuple(n for n in RUNS if (REFERENCE / n / "report.md").is_file())
WITHOUT_REPORT = tuple(n for n in RUNS if n not in WITH_REPORT)
# README.md, "Capacity at an SLO": the two single-pass runs, by scenario and style.
README_CAPACITIES: dict[str, dict[tuple[str, str], str]] = {
    "slo/earlier-a": {
        ("chat", "`def`"): "600 req/s",
        ("chat_stream", "`def`"): "325 req/s (stalls at 350 req/s)",
        ("chat", "`async def` + aiohttp"): "1,200 req/s",
        ("items_read", "`async def` + sync lib"): "2,800 req/s",
    },
    "slo/earlier-b": {
        ("chat", "`def`"): "600 req/s",
        ("chat_stream", "`def`"): "225 req/s (stalls at 250 req/s)",
        ("chat", "`async def` + aiohttp"): "1,100 req/s",
        ("items_read", "`async def` + sync lib"): "≥ 3,200 req/s (every rate tried met the SLO)",
    },
}
# Runs without a report.md and without capacities: the Verdicts rows their report gives.
# distributed/ (README "Load from other hosts"): one `async def` cell of `hello` from two load
# hosts, one style, so no verdict, its scenario listed.
VERDICTS_WITHOUT_REPORT: dict[str, list[tuple[str, str, str, str]]] = {
    "distributed": [("`hello`", "n/a", "n/a", "n/a")],
}
# The one renaming in the reports' words (see the module's docstring).
OLD_WORDS = {"blocking-in-async": variant_words(BLOCKING)}


# --- reading a report.md ------------------------------------------------------------------------


def parts(md: str) -> dict[tuple[str, ...], str]:
    """The text under each heading, keyed by (## heading,) and (## heading, ### heading)."""
    out: dict[tuple[str, ...], str] = {}
    top, sub = "", ""
    for line in md.splitlines():
        if line.startswith("## "):
            top, sub = line[3:].strip(), ""
        elif line.startswith("### "):
            sub = line[4:].strip()
        for key in ((top,), (top, sub)) if sub else ((top,),):
            out[key] = out.get(key, "") + line + "\n"
    return out


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of `text`: its rows as {header: cell}."""
    found: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append(dict(zip(header, _cells(lines[i]), strict=True)))
                i += 1
            found.append(rows)
            continue
        i += 1
    return found


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def table_with(text: str, column: str) -> list[dict[str, str]]:
    """The first table of `text` that has `column`."""
    return next(t for t in tables(text) if t and column in t[0])


def paragraph(text: str, start: str) -> str:
    """The first paragraph of `text` that starts with `start`."""
    return next(p for p in text.split("\n\n") if p.startswith(start))


def subsections(p: dict[tuple[str, ...], str], heading: str) -> dict[str, str]:
    """The ### parts under one ## heading (`` `chat` `` -> its text)."""
    return {key[1]: text for key, text in p.items() if len(key) == 2 and key[0] == heading}


def heading(p: dict[tuple[str, ...], str], start: str) -> str | None:
    """The ## heading that starts with `start`, if the report has one."""
    return next((k[0] for k in p if len(k) == 1 and k[0].startswith(start)), None)


def verdicts(md: str) -> dict[str, object]:
    """What the report decided, part by part (see the module's docstring)."""
    p = parts(md)
    out: dict[str, object] = {}
    if ("Verdicts",) in p:
        rows = table_with(p[("Verdicts",)], "winner")
        lead = "lead: median ratio (repeat interval)"
        out["verdicts"] = [(r["scenario"], r["users"], r["winner"], r[lead]) for r in rows]
    if found := heading(p, "`def` stalls and deadlocks"):
        out["stalls"] = {
            s: paragraph(text, f"{s}:")
            for s, text in subsections(p, found).items()
            if s != "What each fix changes"
        }
    if found := heading(p, "Which HTTP client"):
        out["clients"] = {
            s: paragraph(text, f"{s} at ").split(" The noise:")[0]
            for s, text in subsections(p, found).items()
        }
    if found := heading(p, "SQLite vs PostgreSQL"):
        out["databases"] = {
            s: paragraph(text, f"{s} at ").split(" On SQLite:")[0]
            for s, text in subsections(p, found).items()
        }
    if found := heading(p, "Threadpool sweep"):
        sweep = {}
        for s, text in subsections(p, found).items():
            for row in table_with(text, "users"):
                best = [h for h, cell in row.items() if cell.startswith("**")]
                sweep[(s, row["users"])] = (best, row["gap closed by more tokens"])
        out["threadpool"] = sweep
    if found := heading(p, "Capacity at the SLO"):
        out["capacity"] = {s: capacity_rows(text) for s, text in subsections(p, found).items()}
    if found := heading(p, "Which ASGI server"):
        rows = table_with(p[(found,)], "against the main server")
        out["servers"] = [(r["scenario"], r["server"], r["winner"]) for r in rows]
    if found := heading(p, "Requests whose client left"):
        out["abandon"] = {
            s: [tuple(r.values()) for r in table_with(text, "arm")]
            for s, text in subsections(p, found).items()
        }
    if found := heading(p, "Probe:"):
        rows = table_with(p[(found,)], "finding")
        out["probe"] = [
            (r["route"], r["finding"], r["what to change"].split(":", 2)[:2]) for r in rows
        ]
    return out


CAPACITY_COLUMNS = ("capacity", "first failing rate: why", "bound", "x `def`", "repeats")


def capacity_rows(text: str) -> list[tuple[str, ...]]:
    """Each style's capacity row (style in today's words), [] without a capacity search."""
    if "| style | capacity |" not in text:
        return []
    rows = table_with(text, "capacity")
    return [(_today(r["style"]), *(r[c] for c in CAPACITY_COLUMNS)) for r in rows]


def _today(words: str) -> str:
    for old, new in OLD_WORDS.items():
        words = words.replace(old, new)
    return words


# --- the tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every reference's report.md as the analysis writes it now, text only, out of the tree."""
    root = tmp_path_factory.mktemp("references")
    out = {}
    for name in (*WITH_REPORT, *WITHOUT_REPORT):
        files = write_report(REFERENCE / name, out_dir=root / (name or "main"), draw=False)
        out[name] = files.markdown.read_text(encoding="utf-8")
    return out


@pytest.mark.parametrize("name", WITH_REPORT, ids=lambda n: n or "main")
def test_a_reference_reproduces_the_verdicts_of_its_committed_report(
    name: str, rendered: dict[str, str]
) -> None:
    committed = verdicts((REFERENCE / name / "report.md").read_text(encoding="utf-8"))
    now = verdicts(rendered[name])
    assert committed, "the committed report.md records no verdict this test reads"
    assert set(now) == set(committed)
    for part, decided in committed.items():
        assert decided, f"{part}: nothing parsed from the committed report"
        assert now[part] == decided, part


def test_every_reference_run_is_checked() -> None:
    # The glob finds the runs the hand-written lists used to name, and more.
    assert {"", "abandon", "distributed", "probe", "slo/earlier-a"} <= set(RUNS)
    # A run without a committed report.md needs its expectations written here.
    assert set(WITHOUT_REPORT) == set(README_CAPACITIES) | set(VERDICTS_WITHOUT_REPORT)


@pytest.mark.parametrize("name", sorted(VERDICTS_WITHOUT_REPORT))
def test_a_reference_without_a_report_renders_its_verdicts(
    name: str, rendered: dict[str, str]
) -> None:
    assert rendered[name].startswith("# def or async def? Run ")
    assert verdicts(rendered[name])["verdicts"] == VERDICTS_WITHOUT_REPORT[name]


@pytest.mark.parametrize("name", sorted(README_CAPACITIES))
def test_the_earlier_slo_runs_reproduce_the_capacities_the_readme_quotes(
    name: str, rendered: dict[str, str]
) -> None:
    capacity = verdicts(rendered[name])["capacity"]
    assert isinstance(capacity, dict)
    found = {
        (scenario.strip("`"), row[0]): row[1] for scenario, rows in capacity.items() for row in rows
    }
    for key, text in README_CAPACITIES[name].items():
        assert found[key] == text, key


@pytest.mark.parametrize("name", ("deadlock", "slo"))
def test_a_reference_renders_with_every_chart(name: str, tmp_path: Path) -> None:
    files = write_report(REFERENCE / name, out_dir=tmp_path)
    md = files.markdown.read_text(encoding="utf-8")
    linked = re.findall(r"\]\((charts/[^)]+\.png)\)", md)
    assert linked and {tmp_path / x for x in linked} == set(files.charts)
    assert all(c.stat().st_size > 1000 for c in files.charts)
    assert md.count("data:image/png") == 0 and "data:image/png" in files.html.read_text()
    # The text matches the one rendered without charts, images aside.
    text = write_report(REFERENCE / name, out_dir=tmp_path / "text", draw=False)
    bare = text.markdown.read_text(encoding="utf-8")
    assert verdicts(bare) == verdicts(md)


def test_the_cli_writes_the_text_alone_with_no_charts(tmp_path: Path) -> None:
    assert main(["report", str(REFERENCE / "deadlock"), "--out", str(tmp_path), "--no-charts"]) == 0
    assert (tmp_path / "report.md").exists() and not (tmp_path / "charts").exists()
