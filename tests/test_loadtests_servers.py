"""The ASGI server as a matrix dimension (issue 20): cell ids, the matrix, the plan, the CLI,
`make bench-servers`'s matrix, and one tiny real cell under a non-default server."""

import json
import sys
from pathlib import Path

import pytest

import contract
from loadtests.cli import main
from loadtests.context import RunContext
from loadtests.matrix import Cell, MatrixSpec
from loadtests.plan import PORT, plan_cell
from loadtests.process import Pinning, server_command
from loadtests.runner import run_cell
from loadtests.summary import summary_row, write_summary

MATRICES = Path(__file__).resolve().parent.parent / "loadtests" / "matrices"
DEFAULT = contract.DEFAULT_SERVER


def context(tmp_path: Path) -> RunContext:
    return RunContext(out=tmp_path, pinning=Pinning(None, None), upstream_url="http://u/v1")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param(
            Cell("chat", "sync", "httpx", 200, 1), "chat__sync-httpx__u200__r1", id="default"
        ),
        pytest.param(
            Cell("chat", "sync", "httpx", 200, 1, server="granian"),
            "chat__sync-httpx__u200__sv-granian__r1",
            id="granian",
        ),
        pytest.param(
            Cell("chat", "sync", "httpx", 200, 2, 80, arm="noobs", server="uvicorn-h11"),
            "chat__sync-httpx__u200__t080__sv-uvicorn-h11__noobs__r2",
            id="sweep-and-arm",
        ),
        pytest.param(
            Cell("chat", "async", "httpx", 500, 1, rate=400, server="hypercorn"),
            "chat__async-httpx__rps0400__sv-hypercorn__r1",
            id="rate",
        ),
    ],
)
def test_the_server_is_in_the_cell_id_only_when_not_the_default(cell: Cell, expected: str) -> None:
    assert cell.cell_id == expected


def test_servers_are_the_innermost_dimension_and_validated() -> None:
    spec = MatrixSpec(scenarios=["chat"], variants=["sync", "async"], users=[200], repeats=2)
    assert spec.servers == [DEFAULT] and {c.server for c in spec.cells()} == {DEFAULT}
    two = spec.with_overrides(servers=[DEFAULT, "granian"])
    cells = two.cells()
    assert len(cells) == 2 * len(spec.cells())
    assert [(c.variant, c.server, c.repeat) for c in cells[:4]] == [
        ("sync", DEFAULT, 1),
        ("sync", "granian", 1),
        ("async", DEFAULT, 1),
        ("async", "granian", 1),
    ]
    assert two.estimate_s() == pytest.approx(2 * spec.estimate_s())
    for bad in (["gunicorn"], [], [DEFAULT, DEFAULT]):
        with pytest.raises(ValueError, match="server"):
            MatrixSpec(servers=bad)
    with pytest.raises(ValueError, match="one server"):
        MatrixSpec(servers=[DEFAULT, "granian"], rates=[50, 100], slo="p99=500ms")


def test_repeats_of_adds_passes_of_only_those_cells() -> None:
    spec = MatrixSpec(
        scenarios=["chat_stream"],
        variants=["sync", "async"],
        users=[10, 200],
        repeats=2,
        repeats_of={"chat_stream/sync/200": 4},
    )
    counts = {(c.variant, c.users): 0 for c in spec.cells()}
    for c in spec.cells():
        counts[(c.variant, c.users)] += 1
    assert counts == {("sync", 10): 2, ("sync", 200): 4, ("async", 10): 2, ("async", 200): 2}
    assert spec.passes == 4 and [c.repeat for c in spec.cells()[-2:]] == [3, 4]
    with pytest.raises(ValueError, match="repeats_of"):
        MatrixSpec(repeats_of={"chat/nope": 3})


def test_the_plan_starts_the_cells_server_and_names_it(tmp_path: Path) -> None:
    spec = MatrixSpec(scenarios=["chat"], variants=["sync"], users=[200], servers=["granian"])
    plan = plan_cell(spec.cells()[0], spec, context(tmp_path))
    assert plan.server.name == "granian"
    assert plan.server.command[-2:] == ("--port", PORT)
    assert plan.server.command[3:6] == ("sync", "--server", "granian")
    default = plan_cell(Cell("chat", "sync", "httpx", 200, 1), spec, context(tmp_path))
    # The default server's command is the one every earlier run used.
    assert list(default.server.argv(8000)) == server_command("sync", 8000, sys.executable)
    assert "--server" not in default.server.command and default.server.name == DEFAULT


def test_dry_run_shows_each_cells_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--out", str(tmp_path / "run"), "--scenarios", "chat", "--variants", "sync"]
    args += ["--users", "200", "--repeats", "1", "--servers", f"{DEFAULT},hypercorn", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"ASGI servers {DEFAULT}, hypercorn" in out
    assert "chat__sync-httpx__u200__sv-hypercorn__r1" in out
    assert "-m servers sync --server hypercorn --host " in out


def test_the_servers_matrix_asks_issue_20s_questions_within_45_minutes() -> None:
    spec = MatrixSpec.from_toml(MATRICES / "servers.toml")
    assert set(spec.servers) == set(contract.SERVERS)
    cells = spec.cells()
    default = MatrixSpec.from_toml(MATRICES / "default.toml")
    for server in spec.servers:
        mine = [c for c in cells if c.server == server]
        loads = {(c.scenario, c.variant, c.client, c.users) for c in mine}
        # Every style the default matrix runs at 200 users, blocking proxies at 10 only.
        assert ("chat", "async", "aiohttp", 200) in loads and (
            "items_read",
            "blocking",
            "-",
            200,
        ) in loads
        assert ("chat", "blocking", "httpx", 10) in loads and (
            "chat",
            "blocking",
            "httpx",
            200,
        ) not in loads
        assert not any(u == 10 and v != "blocking" for _, v, _, u in loads)
        assert all(not default.skipped(s, v, u) for s, v, _, u in loads if u == 200)
        stream = [
            c for c in mine if (c.scenario, c.variant, c.users) == ("chat_stream", "sync", 200)
        ]
        assert sorted(c.repeat for c in stream) == [1, 2, 3, 4, 5]
    assert {c.repeat for c in cells if c.scenario != "chat_stream"} == {1, 2, 3}
    assert spec.estimate_s() < 45 * 60


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_a_tiny_real_cell_under_granian_records_its_server(tmp_path: Path) -> None:
    spec = MatrixSpec(
        scenarios=["hello"],
        variants=["sync"],
        users=[2],
        servers=["granian"],
        duration_s=1,
        warmup_s=0.2,
        grace_s=8,
        stall_s=7,
        server_env={"db_pool_timeout_s": 2},
        seed_rows=10,
    )
    ctx = RunContext(out=tmp_path, pinning=Pinning(None, None), scratch=tmp_path)
    cell = spec.cells()[0]
    result = run_cell(cell, spec, ctx)
    assert result.ok, result.reason
    assert cell.cell_id == "hello__sync-none__u002__sv-granian__r1"
    saved = json.loads((tmp_path / cell.cell_id / "cell.json").read_text())
    assert saved["server"] == "granian" and saved["metrics"]["ok"] > 0
    assert summary_row(result)["server"] == "granian"
    write_summary(tmp_path)
    text = (tmp_path / "summary.csv").read_text().splitlines()
    header = text[0].split(",")
    assert text[1].split(",")[header.index("server")] == "granian"
