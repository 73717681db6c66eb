"""The server dimension in the analysis (issue 20): a run over several ASGI servers never mixes
their cells into one style's repeats, and its "Which ASGI server" section says, per scenario and
server, the verdict, whether it agrees with the main server's, and what `def` did."""

from pathlib import Path

import pytest

import contract
from analysis.judge.servers import AGREES, DIFFERS, NO_VERDICT, agreement, def_outcomes
from analysis.judge.verdict import decide_verdicts
from analysis.load import load_run
from analysis.report import write_report
from analysis.sections import registry, servers
from analysis.sections.registry import blocks_of
from tests.analysis_fixtures import (
    CELLS,
    MANIFEST,
    REPEATS,
    Cell,
    section_charts_only,
    summary_row,
    write_manifest,
    write_summary,
)

MAIN = contract.DEFAULT_SERVER
GRANIAN, HYPERCORN = "granian", "hypercorn"
SERVERS = (MAIN, GRANIAN, HYPERCORN)
PROXIES = ("chat", "chat_stream")
DEADLOCK = (
    "self-deadlock: 1/40 holds httpcore's pool lock and waits for it (GC finalizing an unclosed "
    "stream); 39/40 waits for httpcore's pool lock (after 11.0 s without a completion, 200 in "
    "flight)"
)


def server_row(cell: Cell, server: str) -> dict[str, object]:
    """The fixture's row, served by `server`: on granian `def` beats every `async def` at
    `chat` (a changed verdict); on hypercorn `def` deadlocks on `chat_stream` at 200 users."""
    row = summary_row(cell)
    row["server"] = server
    if server == GRANIAN and cell.scenario == "chat" and cell.variant == "sync":
        row["rps"] = float(str(row["rps"])) * 6
    if (server, cell.scenario, cell.variant, cell.users) == (HYPERCORN, "chat_stream", "sync", 200):
        row.update(rps=0.0, stalled=True, gap_max_s=12.0, threads=DEADLOCK)
    return row


def write_servers_run(root: Path) -> Path:
    """The fixture's proxy cells at 10 and 200 users, two passes, under three servers."""
    run = root / "servers-run"
    run.mkdir(parents=True)
    rows = [
        server_row(Cell(s, v, c, u, r, server=server), server)
        for s, v, c in CELLS
        if s in PROXIES
        for u in (10, 200)
        for r in REPEATS
        for server in SERVERS
    ]
    write_summary(run / "summary.csv", rows)
    write_manifest(run, {**MANIFEST, "target": None})
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_servers_run(tmp_path_factory.mktemp("servers"))


def test_every_other_analysis_reads_the_main_server_only(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert run.server == MAIN and run.servers == list(SERVERS)
    assert set(run.summary["server"]) == {MAIN}
    assert len(run.every_server) == 3 * len(run.summary)
    decided = decide_verdicts(run.summary)
    # Two passes per style, not six: no style's repeats mix servers.
    assert int(decided.counted["repeats"].max()) == len(REPEATS)
    chat = next(v for v in decided.verdicts if v.scenario == "chat")
    assert chat.clear and chat.winners == ("async (aiohttp)",)


def test_the_section_compares_each_servers_verdict_with_the_main_one(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert servers.SECTION.scenarios(run) == list(PROXIES)
    table = servers.SECTION.table(run, PROXIES, decide_verdicts(run.summary))
    assert table.servers == SERVERS and table.main == MAIN
    by = {(r.scenario, r.server): r for r in table.verdicts}
    assert by[("chat", GRANIAN)].agreement == DIFFERS
    assert by[("chat", GRANIAN)].verdict.winners == ("sync",)
    assert by[("chat", HYPERCORN)].agreement == AGREES
    # Hypercorn's stream verdict is made without its stalled `def`, and still agrees.
    assert by[("chat_stream", HYPERCORN)].agreement == AGREES
    outcomes = {(o.scenario, o.server): o for o in table.outcomes}
    stream = outcomes[("chat_stream", HYPERCORN)]
    assert (stream.outcome_kind, stream.stalled, stream.self_deadlocks) == ("deadlock", 2, 2)
    assert stream.users == 200 and stream.threads.startswith(contract.SELF_DEADLOCK)
    assert outcomes[("chat_stream", MAIN)].outcome_kind != "deadlock"


def test_the_section_says_what_holds_and_what_changes(run_dir: Path) -> None:
    text = "\n".join(str(b) for b in blocks_of(servers.SECTION, load_run(run_dir)))
    assert "Which ASGI server" in text
    assert "`chat`: the verdict changes on 1 server(s) (`granian`:" in text
    assert "`chat_stream`: the verdict holds on every server" in text
    assert "`hypercorn` deadlock (of 2 at 200 users, 2 named a self-deadlock)" in text


def test_the_report_says_whose_cells_the_verdicts_read_and_draws_the_chart(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    section_charts_only(monkeypatch)
    files = write_report(run_dir, out_dir=tmp_path, reference=None)
    md = files.markdown.read_text()
    assert "served its cells under 3 ASGI servers" in md
    assert f"read the `{MAIN}` cells only (32 of 96 closed-loop cells)" in md
    assert md.index("## Verdicts") < md.index("## Which ASGI server")
    assert (tmp_path / "charts" / servers.CHART).is_file()
    assert "charts/servers.png" in md


def test_a_run_of_one_server_has_no_server_section(tmp_path: Path) -> None:
    run = tmp_path / "one"
    run.mkdir()
    rows = [server_row(Cell("chat", "sync", "httpx", 200, r), MAIN) for r in REPEATS]
    write_summary(run / "summary.csv", rows)
    write_manifest(run, {**MANIFEST, "target": None})
    loaded = load_run(run)
    assert servers.SECTION.scenarios(loaded) == []
    assert servers.SECTION not in {
        s.section for s in registry.show(loaded, decide_verdicts(loaded.summary))
    }


def test_an_old_run_without_the_column_reads_as_the_default_server(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    rows = [
        summary_row(Cell("chat", v, "httpx", 200, r)) for v in ("sync", "async") for r in REPEATS
    ]
    header = [c for c in contract.SUMMARY_COLUMNS if c != "server"]
    write_summary(run / "summary.csv", rows, header)
    write_manifest(run, {**MANIFEST, "target": None})
    loaded = load_run(run)
    assert "server" in loaded.missing_columns
    assert set(loaded.summary["server"]) == {MAIN} and loaded.server == MAIN
    assert any(note.startswith(f"`server` = `{MAIN}`") for note in loaded.derived)
    # A `--target` run's server is unknown: it stays unnamed.
    write_manifest(run, {**MANIFEST, "target": "http://elsewhere:8000"})
    assert set(load_run(run).summary["server"]) == {""}


def test_agreement_needs_a_verdict_on_both_sides(run_dir: Path) -> None:
    run = load_run(run_dir)
    verdict = next(v for v in decide_verdicts(run.summary).verdicts if v.scenario == "chat")
    assert agreement(None, verdict)[0] == NO_VERDICT
    assert agreement(verdict, verdict) == (AGREES, "same winner")
    assert def_outcomes(run.every_server, ["nothing"], list(SERVERS)) == []
