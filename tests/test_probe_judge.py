"""The probe's rules (analysis/judge/probe.py) on synthetic cells: which finding wins when two
rules hold. The integration tests (test_probe.py, test_probe_example.py) show the rules on real
runs; these pin the order on numbers chosen to sit either side of each threshold."""

from typing import Any

import pytest

from analysis.judge.probe import (
    BLOCKS_LOOP,
    FLIP_FASTER,
    NOT_PROBED,
    OK,
    STALLS,
    STARVES,
    Finding,
    find,
)
from analysis.load.probe import Held, ProbeCell
from analysis.sections.probe import first_rows
from contract.cell import CellResult

ROUTE: dict[str, Any] = {
    "id": "get_products",
    "method": "GET",
    "path": "/products",
    "style": "def",
    "dependencies": [],
    "endpoint": {"file": "shop.py", "line": 93, "name": "shop.list_products"},
}


def cell(
    rps: float,
    *,
    arm: str = "",
    tokens: int = 40,
    waiting: int = 0,
    repeat: int = 1,
    holds: int = 0,
    cpu: float = 1.0,
) -> ProbeCell:
    suffix = f"__{arm}" if arm else (f"__t{tokens:03d}" if tokens != 40 else "")
    result = CellResult.parse(
        {
            "cell_id": f"get_products__sync__u100__r{repeat}{suffix}",
            "scenario": "get_products",
            "variant": "sync",
            "client": "-",
            "users": 100,
            "repeat": repeat,
            "status": "ok",
            "valid": True,
            "metrics": {"rps": rps, "requests": int(rps * 10), "ok": int(rps * 10)},
            "judged": {"cpu_ms_per_req": cpu},
            "mechanisms": {"threadpool_peak_in_use": 40, "threadpool_peak_waiting": waiting},
        }
    )
    held = (Held("shop.py:95", "", "", True, (20.0,) * holds),) if holds else ()
    return ProbeCell(result, "get_products", arm, tokens, held)


def judged(*cells: ProbeCell) -> Any:
    return find(ROUTE, cells, {"arms": ["flip", "t100"]})


def test_more_tokens_that_help_make_the_route_starve() -> None:
    out = judged(cell(1000, waiting=30), cell(1010, waiting=30, repeat=2), cell(1500, tokens=100))
    assert out.finding == STARVES
    assert out.headline == "x1.49 with 100 thread tokens"


def test_the_flip_wins_when_it_gains_more_than_the_tokens() -> None:
    out = judged(
        cell(1000, waiting=30),
        cell(1010, waiting=30, repeat=2),
        cell(1200, tokens=100),
        cell(1800, arm="flip"),
    )
    assert out.finding == FLIP_FASTER
    assert out.headline == "x1.79 as `async def`"
    assert any("100 tokens" in w and "flip" in w for w in out.warnings)


def test_the_tokens_win_when_the_flip_gains_less() -> None:
    out = judged(
        cell(1000, waiting=30),
        cell(1010, waiting=30, repeat=2),
        cell(1800, tokens=100),
        cell(1200, arm="flip"),
    )
    assert out.finding == STARVES


@pytest.mark.parametrize(
    ("flip_rps", "flip_cpu", "finding"),
    [
        # A busy machine capped both (neither side saturated): alike in throughput, the flip
        # costs x2.6 less server CPU per request (tests/test_probe_example.py on CI: /products).
        (2843.0, 0.138, FLIP_FASTER),
        # Alike in throughput and in cost: nothing to change.
        (2843.0, 0.350, OK),
        # Cheaper but slower beyond the noise: not a lead.
        (2000.0, 0.138, OK),
    ],
)
def test_the_flip_leads_by_cpu_per_request_where_throughput_cannot_tell(
    flip_rps: float, flip_cpu: float, finding: str
) -> None:
    out = judged(
        cell(2563, cpu=0.361),
        cell(2700, cpu=0.350, repeat=2),
        cell(flip_rps, arm="flip", cpu=flip_cpu),
    )
    assert out.finding == finding
    if finding == FLIP_FASTER:
        assert out.headline == "x2.58 as `async def`"
        assert "server CPU per request (throughput within the noise)" in out.evidence


def test_waiting_for_threads_without_more_tokens_helping_is_not_starving() -> None:
    out = judged(cell(1000, waiting=30), cell(1010, waiting=30, repeat=2), cell(1030, tokens=100))
    assert out.finding == OK
    assert any("within the noise" in w for w in out.warnings)


def test_a_few_holds_among_many_requests_are_not_the_routes() -> None:
    # 2 x 2 holds among 2 x 10,000 requests: 0.02 %, a busy machine's, not the route's.
    out = judged(cell(1000, holds=2), cell(1000, holds=2, repeat=2))
    assert out.finding == OK
    assert any("held 4 times" in w and "under 1%" in w for w in out.warnings)


def test_holds_on_a_share_of_the_requests_block_the_loop() -> None:
    out = judged(cell(1000, holds=150), cell(1000, holds=150, repeat=2))
    assert out.finding == BLOCKS_LOOP
    assert out.site == "shop.py:95"


@pytest.mark.parametrize(
    ("awaits", "awaited", "cpu_ms", "says"),
    [
        # Waiting with the loop held, in a body that awaits nothing: remove `async`.
        (False, False, 1.0, "Declare it `def`"),
        # Waiting in a sync call beside awaits: an async equivalent, or a thread.
        (True, False, 1.0, "with its async equivalent, or run it in a thread"),
        # Computing in a sync call: off the loop, and no faster for it.
        (True, False, 19.0, "computes on the loop (95% of the held time on a core)"),
        # Computing inside an awaited coroutine: the async library's own work; no style fixes it.
        (True, True, 19.0, "neither `def` nor `run_in_threadpool` frees it"),
        # Waiting inside an awaited coroutine: the async library blocks.
        (True, True, 1.0, "is awaited but blocks inside"),
    ],
)
def test_the_advice_for_a_held_loop_follows_what_the_holds_were(
    awaits: bool, awaited: bool, cpu_ms: float, says: str
) -> None:
    def holding(repeat: int) -> ProbeCell:
        base = cell(1000, repeat=repeat)
        held = Held("app.py:12", "client.get", "", True, (20.0,) * 150, (cpu_ms,) * 150, awaited)
        return ProbeCell(base.result, base.route, base.arm, base.tokens, (held,))

    route = {**ROUTE, "style": "async def", "awaits": awaits}
    out = find(route, [holding(1), holding(2)], {"arms": []})
    assert out.finding == BLOCKS_LOOP and out.call == "client.get"
    assert says in out.advice, out.advice


def test_the_first_table_puts_the_worst_first_and_names_unprobed_routes_together() -> None:
    def route(path: str, method: str = "GET") -> dict[str, Any]:
        return {**ROUTE, "id": path, "path": path, "method": method}

    why = "POST may change the app's data"
    found = [
        Finding(route("/a", "POST"), NOT_PROBED, advice=why),
        Finding(route("/b"), OK, headline="1 req/s"),
        Finding(route("/c", "PATCH"), NOT_PROBED, advice=why),
        Finding(route("/d"), STALLS, site="shop.py:85"),
        Finding(route("/e"), NOT_PROBED, advice="it needs a request body"),
        Finding(route("/f"), BLOCKS_LOOP),
    ]
    rows = first_rows(found)
    assert [r[0] for r in rows] == [
        "`GET /d`",
        "`GET /f`",
        "`GET /b`",
        "`POST /a`, `PATCH /c`",
        "`GET /e`",
    ]
    assert rows[3][2:4] == [f"**{NOT_PROBED}**", why]
