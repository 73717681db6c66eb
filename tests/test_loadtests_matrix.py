"""Matrix expansion, cell naming, TOML loading and the time estimate: no server."""

from pathlib import Path

import pytest

from contract import DB_SCENARIOS
from loadtests.matrix import CELL_OVERHEAD_S, Cell, MatrixSpec
from loadtests.postgres import LAB_CLUSTER
from loadtests.scenarios import SCENARIOS

MATRICES = Path(__file__).resolve().parent.parent / "loadtests" / "matrices"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param(
            Cell("chat", "async", "httpx", 50, 1), "chat__async-httpx__u050__r1", id="proxy"
        ),
        pytest.param(
            Cell("hello", "sync", "-", 1, 2), "hello__sync-none__u001__r2", id="no-client"
        ),
        pytest.param(
            Cell("mixed", "async", "aiohttp", 200, 1),
            "mixed__async-aiohttp__u200__r1",
            id="aiohttp",
        ),
    ],
)
def test_cell_id(cell: Cell, expected: str) -> None:
    assert cell.cell_id == expected


def test_clients_apply_only_to_proxy_scenarios() -> None:
    spec = MatrixSpec(async_clients=["httpx", "aiohttp"])
    assert spec.clients_for("chat", "async") == ["httpx", "aiohttp"]
    assert spec.clients_for("chat_stream", "sync") == ["httpx"]
    assert spec.clients_for("mixed", "blocking") == ["httpx"]
    assert spec.clients_for("items_read", "async") == ["-"]


def test_expansion_counts_and_interleaved_repeats() -> None:
    spec = MatrixSpec(
        scenarios=["hello", "chat"],
        variants=["sync", "async"],
        async_clients=["httpx", "aiohttp"],
        users=[1, 10],
        repeats=2,
    )
    cells = spec.cells()
    # hello: 2 variants; chat: sync + async x 2 clients = 3; x 2 levels x 2 repeats.
    assert len(cells) == (2 + 3) * 2 * 2
    assert len({c.cell_id for c in cells}) == len(cells)
    # Repeat 2 starts only after every cell of repeat 1.
    repeats = [c.repeat for c in cells]
    assert repeats == sorted(repeats)
    assert cells[: len(cells) // 2] == [
        Cell(c.scenario, c.variant, c.client, c.users, 1) for c in cells[len(cells) // 2 :]
    ]


def test_toml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('scenarios = ["chat"]\nusers = [5]\nduration_s = 7\n')
    spec = MatrixSpec.from_toml(path, users=[1, 2], duration_s=None)
    assert spec.scenarios == ["chat"]
    assert spec.users == [1, 2]
    assert spec.duration_s == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("colour = 1\n", "unknown keys", id="unknown-key"),
        pytest.param('scenarios = ["nope"]\n', "scenario", id="unknown-scenario"),
        pytest.param('variants = ["fast"]\n', "variant", id="unknown-variant"),
        pytest.param("users = [0]\n", "user levels", id="zero-users"),
        pytest.param("repeats = 0\n", "repeats", id="no-repeats"),
    ],
)
def test_bad_matrix_is_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        MatrixSpec.from_toml(path)


def test_upstream_latency_and_drain() -> None:
    spec = MatrixSpec(
        ttft_ms=50,
        itl_ms=10,
        chat_tokens=1,
        stream_tokens=4,
        grace_s=20,
        stall_s=12,
        server_env={"db_pool_timeout_s": 10},
    )
    assert spec.upstream_latency_ms("chat") == 50
    assert spec.upstream_latency_ms("chat_stream") == 80
    assert spec.upstream_latency_ms("hello") is None
    assert spec.drain_s(Cell("chat", "async", "httpx", 200, 1)) == pytest.approx(0.05)
    # The blocking server serves one call at a time: each user waits for all the others.
    assert spec.drain_s(Cell("chat", "blocking", "httpx", 100, 1)) == pytest.approx(5.0)
    assert spec.drain_s(Cell("chat_stream", "blocking", "httpx", 400, 1)) == 20  # bounded


def test_estimate_adds_cells() -> None:
    spec = MatrixSpec(
        scenarios=["hello"], variants=["sync"], users=[1, 2], warmup_s=1, duration_s=2
    )
    assert spec.estimate_s() == pytest.approx(2 * (CELL_OVERHEAD_S + 3))


def test_default_matrix_covers_the_issue_and_fits_20_minutes() -> None:
    spec = MatrixSpec.from_toml(MATRICES / "default.toml")
    # items_wait is the PostgreSQL question's scenario (postgres.toml, below); chat_abandon
    # is abandon.toml's (what a request whose client has gone costs).
    assert set(spec.scenarios) == set(SCENARIOS) - {"items_wait", "chat_abandon"}
    assert set(spec.variants) == {"sync", "async", "blocking"}
    assert "aiohttp" in spec.async_clients
    assert min(spec.users) <= 10 and max(spec.users) == 200
    # Every verdict gets an interval from at least three repeats.
    assert spec.repeats >= 3
    # p99 needs 1,000 samples: the window closes on that target.
    assert spec.sample_target >= 1000
    # The observer-effect pair is in the run.
    assert any(arm.env.get("observe") is False for arm in spec.arms)
    assert spec.estimate_s() < 20 * 60


def test_postgres_matrix_runs_every_db_scenario_style_and_driver_on_both_databases() -> None:
    spec = MatrixSpec.from_toml(MATRICES / "postgres.toml")
    assert set(spec.scenarios) == set(DB_SCENARIOS)
    assert set(spec.variants) == {"sync", "async", "blocking"}  # SQLite, the base cells
    pg = [arm for arm in spec.arms if arm.env.get("db_url") == LAB_CLUSTER]
    ran = {(v, arm.env.get("db_async_driver", "psycopg")) for arm in pg for v in arm.variants}
    assert ran >= {("sync", "psycopg"), ("async", "psycopg"), ("async", "asyncpg")}
    assert ran >= {("blocking", "psycopg")}
    pools = {(arm.env.get("db_pool_size", 5), arm.env.get("db_max_overflow", 10)) for arm in pg}
    assert pools == {(5, 10), (40, 0)}  # SQLAlchemy's default and one connection per token
    assert spec.repeats >= 2
    assert spec.estimate_s() < 15 * 60


def test_quick_matrix_fits_3_minutes() -> None:
    assert MatrixSpec.from_toml(MATRICES / "quick.toml").estimate_s() < 3 * 60


def test_threadpool_token_sweep_names_cells_and_sets_the_server() -> None:
    spec = MatrixSpec(
        scenarios=["chat"], variants=["sync"], users=[50], threadpool_tokens=[40, 200]
    )
    ids = [c.cell_id for c in spec.cells()]
    assert ids == ["chat__sync-httpx__u050__t040__r1", "chat__sync-httpx__u050__t200__r1"]
    assert [spec.tokens_of(c) for c in spec.cells()] == [40, 200]
    single = MatrixSpec(scenarios=["chat"], variants=["sync"], users=[50], threadpool_tokens=80)
    assert [c.cell_id for c in single.cells()] == ["chat__sync-httpx__u050__r1"]
    assert single.tokens_of(single.cells()[0]) == 80


def test_sync_clients_apply_to_sync_and_blocking_only() -> None:
    spec = MatrixSpec(sync_clients=["httpx", "httpx2"], async_clients=["aiohttp"])
    assert spec.clients_for("chat_stream", "sync") == ["httpx", "httpx2"]
    assert spec.clients_for("chat", "blocking") == ["httpx", "httpx2"]
    assert spec.clients_for("chat", "async") == ["aiohttp"]
    with pytest.raises(ValueError, match="sync client"):
        MatrixSpec(sync_clients=["aiohttp"])


def test_stalls_matrix_covers_issue_9_and_fits_15_minutes() -> None:
    spec = MatrixSpec.from_toml(MATRICES / "stalls.toml")
    cells = spec.cells()
    arms = {a.name: a for a in spec.arms}
    # Every DB fix on both DB scenarios at 50, 200 and 400 users, in the sync app only.
    for name in (
        "db_scope_function",
        "db_pool_40",
        "db_session_in_endpoint",
        "db_max_concurrency",
        "fastapi_overflow",
    ):
        assert set(arms[name].scenarios) == {"items_read", "items_write"}
        assert arms[name].users == [50, 200, 400] and arms[name].variants == ["sync"]
    for name in ("stream_close_response", "stream_max_concurrency", "stream_pool_20"):
        assert arms[name].scenarios == ["chat_stream"] and arms[name].users == [200, 400]
    # The references: async def on every scenario and load; httpx2 in the sync streaming cells.
    assert {(c.scenario, c.users) for c in cells if c.variant == "async"} == {
        (s, u) for s in ("items_read", "items_write") for u in (50, 200, 400)
    } | {("chat_stream", 200), ("chat_stream", 400)}
    assert {c.users for c in cells if c.client == "httpx2"} == {200, 400}
    # A DB pool timeout ends a stall before it counts as a deadlock; the dump comes first.
    assert spec.server_env["db_pool_timeout_s"] + 2 <= spec.stall_s
    assert 0 < spec.dump_after_s < spec.stall_s
    # The estimate counts every cell healthy; a stalled one also runs the longest warm-up and
    # the stall (about 20 s more): the 15-minute budget leaves room for 15 of them.
    clock = spec.clock()
    extra = clock.warmup_max_s + spec.stall_s
    assert spec.estimate_s() + 15 * extra < 15 * 60


def test_clients_matrix_pairs_every_style_with_every_client_in_10_minutes() -> None:
    spec = MatrixSpec.from_toml(MATRICES / "clients.toml")
    cells = spec.cells()
    pairs = {(c.scenario, c.variant, c.client, c.arm) for c in cells}
    for scenario in ("chat", "chat_stream", "mixed"):
        for client in ("httpx", "httpx2", "aiohttp"):
            assert (scenario, "async", client, "") in pairs
        # `def` streaming runs on the fixed app (it stalls whatever the client otherwise).
        arm = "stream_fix" if scenario == "chat_stream" else ""
        for client in ("httpx", "httpx2"):
            assert (scenario, "sync", client, arm) in pairs
    assert ("chat_stream", "sync", "httpx", "") not in pairs
    assert spec.repeats >= 3 and spec.users == [200]
    assert spec.estimate_s() + 4 * (spec.clock().warmup_max_s + spec.stall_s) < 10 * 60
