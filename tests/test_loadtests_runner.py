"""Command building, resume, raw-file merging, pinning, CPU maths and the CLI: no server."""

import json
import os
import sys
import time
from pathlib import Path

import pytest

from loadtests.cli import BenchOptions, main
from loadtests.context import RunContext
from loadtests.locust_runner import Clock, LocustRun, locust_command, merge_meta, merge_raw
from loadtests.matrix import Cell, MatrixSpec
from loadtests.plan import cell_command, db_driver, server_env
from loadtests.process import CpuSampler, Pinning
from loadtests.runner import plan_cells, run_cell
from loadtests.scenarios import SCENARIOS
from loadtests.summary import load_requests

SPEC = MatrixSpec(
    scenarios=["chat", "hello"], variants=["sync", "blocking"], users=[1, 50], repeats=2
)


def context(tmp_path: Path) -> RunContext:
    return RunContext(out=tmp_path, pinning=Pinning((1,), (0,)), upstream_url="http://u/v1")


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


@pytest.mark.parametrize(
    ("scenario", "users", "classes", "expected_users"),
    [
        pytest.param("hello", 10, ["HelloUser"], "10", id="hello"),
        pytest.param("chat_stream", 5, ["ChatStreamUser"], "5", id="stream"),
        pytest.param("mixed", 50, ["HeavyChatUser", "ProbeUser"], "51", id="mixed-adds-probe"),
    ],
)
def test_locust_command(
    tmp_path: Path, scenario: str, users: int, classes: list[str], expected_users: str
) -> None:
    cmd = locust_command(
        SCENARIOS[scenario],
        host="http://127.0.0.1:9",
        users=users,
        spawn_rate=1000,
        clock=Clock(0.5, 2.0, 3.0, 1000, 20.0, 12.0),
        cell_dir=tmp_path,
        options={"max_tokens": 4},
    )
    assert cmd[:3] == ["python", "-m", "locust"]
    assert option(cmd, "-f").endswith(SCENARIOS[scenario].locustfile)
    assert cmd[5 : 5 + len(classes)] == classes
    assert option(cmd, "--users") == expected_users
    assert option(cmd, "--warmup-seconds") == "0.5"
    assert option(cmd, "--window-min") == "2" and option(cmd, "--window-max") == "3"
    assert option(cmd, "--sample-target") == "1000"
    assert option(cmd, "--grace-seconds") == "20" and option(cmd, "--stall-seconds") == "12"
    # The locustfile's clock ends the run; these whole-second limits are backstops.
    assert option(cmd, "--run-time") == "6s"
    assert option(cmd, "--stop-timeout") == "22s"
    assert option(cmd, "--csv") == str(tmp_path / "locust")
    assert option(cmd, "--html") == str(tmp_path / "locust.html")
    assert option(cmd, "--max-tokens") == "4"
    assert {"--headless", "--csv-full-history"} <= set(cmd)
    assert "--processes" not in cmd


def test_locust_processes(tmp_path: Path) -> None:
    clock = Clock(0, 1, 1, 0, 0, 0)
    cmd = locust_command(SCENARIOS["hello"], "http://h", 1, 1, clock, tmp_path, {}, processes=4)
    assert option(cmd, "--processes") == "4"


def test_cell_command_and_env(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    cell = Cell("chat", "async", "aiohttp", 50, 2)
    cmd = cell_command(cell, SPEC, ctx, "http://127.0.0.1:5")
    assert option(cmd, "--raw-dir") == str(tmp_path / cell.cell_id)
    assert float(option(cmd, "--warmup-seconds")) == SPEC.warmup_s
    assert float(option(cmd, "--window-min")) == SPEC.duration_s
    env = server_env(cell, SPEC, ctx)
    assert env["LAB_HTTP_CLIENT"] == "aiohttp"
    assert env["LAB_DB_RESET"] == "true"
    assert env["LAB_UPSTREAM_URL"] == "http://u/v1"
    assert env["LAB_THREADPOOL_TOKENS"] == "40"
    assert "LAB_HTTP_CLIENT" not in server_env(Cell("hello", "sync", "-", 1, 1), SPEC, ctx)
    # Without the server's pid, Locust cannot dump its threads; with it, it can.
    assert "--server-pid" not in cmd
    dumping = cell_command(cell, SPEC, ctx, "http://127.0.0.1:5", server_pid=4321)
    assert option(dumping, "--server-pid") == "4321"
    assert float(option(dumping, "--dump-after")) == SPEC.dump_after_s


def test_resume_skips_finished_cells(tmp_path: Path) -> None:
    cells, todo = plan_cells(SPEC, tmp_path, resume=True)
    assert todo == cells
    done = cells[:3]
    for cell in done:
        (tmp_path / cell.cell_id).mkdir()
        (tmp_path / cell.cell_id / "cell.json").write_text("{}")
    # A folder without cell.json is an interrupted cell: it runs again.
    (tmp_path / cells[3].cell_id).mkdir()
    _, todo = plan_cells(SPEC, tmp_path, resume=True)
    assert todo == cells[3:]
    _, todo = plan_cells(SPEC, tmp_path, resume=False)
    assert todo == cells


def test_merge_raw_parts(tmp_path: Path) -> None:
    (tmp_path / "requests.11.csv").write_text("1.5,request,GET /hello,2.000,1\n")
    (tmp_path / "requests.12.csv").write_text("1.6,probe,GET /hello,3.000,0\n")
    (tmp_path / "meta.11.json").write_text(json.dumps({"test_start": 5, "spawned": 3}))
    (tmp_path / "meta.12.json").write_text(json.dumps({"test_start": 4, "cut_off": 2}))
    path, meta = merge_raw(tmp_path)
    frame = load_requests(path)
    assert list(frame["kind"]) == ["request", "probe"]
    assert meta["test_start"] == 4 and meta["spawned"] == 3 and meta["cut_off"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requests.csv"]


def test_merge_meta_of_nothing() -> None:
    assert merge_meta([])["test_start"] is None


@pytest.mark.parametrize(
    ("code", "timed_out", "ok"),
    [(0, False, True), (1, False, True), (2, False, False), (None, True, False)],
)
def test_locust_run_ok(code: int | None, timed_out: bool, ok: bool) -> None:
    assert LocustRun(code, timed_out, 1.0).ok is ok


@pytest.mark.parametrize(
    ("cpus", "server", "load", "shared"),
    [
        pytest.param([0], None, None, True, id="one-core"),
        pytest.param([0, 1], (1,), (0,), True, id="two-cores"),
        pytest.param([0, 1, 2, 3], (3,), (0, 1, 2), False, id="four-cores"),
    ],
)
def test_pinning_plan(
    cpus: list[int], server: tuple | None, load: tuple | None, shared: bool
) -> None:
    pinning = Pinning.plan(cpus)
    assert (pinning.server, pinning.load, pinning.shared_load_core) == (server, load, shared)


def test_cpu_sampler_maths() -> None:
    sampler = CpuSampler()
    sampler.samples["x"] = [(0.0, 0.0), (1.0, 0.5), (2.0, 1.5), (3.0, 1.6)]
    assert sampler.percent("x", 0.0, 2.0) == pytest.approx(75.0)
    assert sampler.peak("x", 0.0, 3.0) == pytest.approx(100.0)
    assert sampler.percent("x", 5.0, 6.0) is None
    assert sampler.percent("missing", 0.0, 3.0) is None


@pytest.mark.timing  # a CPU share: run alone (make test)
def test_cpu_sampler_measures_this_process() -> None:
    with CpuSampler(interval=0.05) as sampler:
        sampler.watch("me", os.getpid())
        start = time.time()
        while time.time() - start < 0.4:
            pass  # busy: about 100% of one core
    pct = sampler.percent("me", 0.0, time.time() + 1)
    assert pct is not None and pct > 40


def test_options_from_cli(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    BenchOptions.add_cli_args(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path), "--scenarios", "chat,hello", "--users", "1,5", "--duration", "4"]
        + ["--target", "http://x:1/", "--locust-processes", "2", "--threadpool-tokens", "80"]
    )
    options = BenchOptions.from_cli_args(args)
    assert options.target == "http://x:1"
    assert options.locust_processes == 2
    spec = options.spec()
    assert spec.scenarios == ["chat", "hello"] and spec.users == [1, 5]
    assert spec.duration_s == 4 and spec.token_levels == [80]
    assert spec.repeats == MatrixSpec().repeats  # not given: the default stays


def test_dry_run_prints_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--out", str(tmp_path / "run"), "--scenarios", "chat", "--variants", "sync"]
        + ["--users", "3", "--repeats", "1", "--dry-run"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "1 of 1 cells" in out and "chat__sync-httpx__u003__r1" in out and "estimated" in out
    assert not (tmp_path / "run").exists()


def test_refuses_to_overwrite_without_resume(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "cell.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scenarios", "hello", "--users", "1"])


def test_python_is_this_interpreter(tmp_path: Path) -> None:
    assert context(tmp_path).python == sys.executable


def test_a_server_that_dies_fails_the_cell_not_the_matrix(tmp_path: Path) -> None:
    # `false` stands in for both the server and Locust: it exits at once with code 1.
    ctx = RunContext(out=tmp_path, pinning=Pinning(None, None), python="false")
    spec = MatrixSpec(scenarios=["hello"], variants=["sync"], users=[1])
    doc = run_cell(spec.cells()[0], spec, ctx).to_dict()
    assert doc["status"] == "failed"
    assert doc["reason"].startswith("server never became ready: exited with code 1")
    saved = json.loads((tmp_path / doc["cell_id"] / "cell.json").read_text())
    assert saved["reason"] == doc["reason"] and saved["valid"] is False


def test_upstream_capacity_command(tmp_path: Path) -> None:
    from loadtests.upstream_capacity import capacity_command

    cmd = capacity_command("http://127.0.0.1:9", 200, 15.0, 2.0, 50.0, tmp_path)
    # The bare mock has /health, not the apps' /ready; the window is fixed (no sample target).
    assert option(cmd, "--ready-path") == "/health"
    assert option(cmd, "--window-min") == option(cmd, "--window-max") == "15"
    assert option(cmd, "--sample-target") == "0" and option(cmd, "--warmup-seconds") == "2"


def test_help_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """Every option's help text formats (a bare `%` in one made `--help` crash)."""
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "--db-wait-ms" in capsys.readouterr().out


def test_a_cell_records_the_database_its_server_inherits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers inherit the orchestrator's environment: an exported LAB_DB_URL is what they run."""
    monkeypatch.delenv("LAB_DB_URL", raising=False)
    assert db_driver({}, "sync") == "sqlite+pysqlite"
    monkeypatch.setenv("LAB_DB_URL", "postgresql://h/db")
    monkeypatch.setenv("LAB_DB_ASYNC_DRIVER", "asyncpg")
    assert db_driver({}, "sync") == "postgresql+psycopg"
    assert db_driver({}, "async") == "postgresql+asyncpg"
    assert db_driver({"LAB_DB_URL": ""}, "async") == "sqlite+aiosqlite"


def test_the_lab_cluster_is_refused_with_a_target(tmp_path: Path) -> None:
    matrix = Path(__file__).resolve().parent.parent / "loadtests/matrices/postgres.toml"
    with pytest.raises(SystemExit) as exit_:
        main(["--matrix", str(matrix), "--target", "http://127.0.0.1:9", "--out", str(tmp_path)])
    assert exit_.value.code == 2
