"""Rate mode and the capacity search, unit by unit: the SLO, the search's path, the matrix, the
open-loop summary (no processes; tests/test_rate_mode.py runs them for real)."""

import pandas as pd
import pytest

from contract import CAPACITY_BOUNDS, CAPACITY_COLUMNS, CENSORED, LOADGEN_BEHIND, OK
from contract.slo import FAIL, PASS, UNJUDGED, Slo, SloCheck, check, parse_slo
from loadtests.cli import BenchOptions, main
from loadtests.matrix import Cell, MatrixSpec
from loadtests.search import Search, capacity_row, next_rate, run_search, write_capacity
from loadtests.summary import behind, open_loop_metrics, summary_row

# --- the SLO ----------------------------------------------------------------------------------


def test_parse_slo_reads_both_parts_and_units() -> None:
    assert parse_slo("p99=500ms,errors=1%") == Slo(500.0, 1.0, 99.0)
    assert parse_slo("p95=0.25s") == Slo(latency_ms=250.0, quantile=95.0)
    assert parse_slo("errors=0.5") == Slo(errors_pct=0.5)
    assert parse_slo("p99=500ms,errors=1%").text() == "p99=500ms,errors=1%"


@pytest.mark.parametrize("bad", ["", "p99", "p98=5ms", "p99=5%", "errors=150%", "lat=5ms"])
def test_parse_slo_rejects_what_it_cannot_judge(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_slo(bad)


def row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {"status": "ok", "valid": "True", "stalled": "False"}
    base |= {"requests": 2000, "ok": 2000, "errors": 0, "timeouts": 0, "censored": 0}
    base |= {"p99_ms": 120.0, "max_ms": 900.0}
    return base | values


SLO = Slo(500.0, 1.0)


def test_judge_passes_on_the_percentile_with_enough_samples() -> None:
    assert check(row(), SLO) == SloCheck(PASS, "p99 120 ms", "p99")
    assert check(row(p99_ms=501.0), SLO).status == FAIL


def test_judge_uses_the_maximum_when_the_percentile_lacks_samples() -> None:
    # 300 samples cannot print a p99 (contract.min_samples): every sample must meet the SLO.
    few = row(requests=300, ok=300, p99_ms=100.0)
    assert check(few, SLO) == SloCheck(FAIL, "max 900 ms > 500 ms", "max")
    assert check(few | {"max_ms": 400.0}, SLO).status == PASS


def test_judge_counts_errors_and_timeouts_and_never_passes_a_stall() -> None:
    assert check(row(errors=15, timeouts=10), SLO).why == "errors 1.2% > 1%"
    both = check(row(errors=30, p99_ms=900.0), SLO).why
    assert both == "p99 900 ms > 500 ms; errors 1.5% > 1%"
    assert check(row(errors=20), SLO).status == PASS
    assert check(row(stalled="True"), SLO) == SloCheck(FAIL, "stalled")


def test_judge_does_not_judge_what_the_load_side_limited() -> None:
    invalid = check(row(valid="False", invalid_reason=f"{LOADGEN_BEHIND}: sent 1 of 9"), SLO)
    assert invalid.status == UNJUDGED and LOADGEN_BEHIND in invalid.why
    assert check(row(status="failed", reason="server exited"), SLO).status == UNJUDGED


def test_censored_requests_count_as_latency_samples() -> None:
    # 900 ok + 200 censored: enough for a p99, which includes the censored ages.
    assert check(row(requests=1100, ok=900, censored=200), SLO).basis == "p99"


# --- the search -------------------------------------------------------------------------------

LADDER = [50, 100, 200, 400, 800]


def fake(capacity: float, unjudged_above: float = 1e9):
    """A measure: passes below `capacity`, fails at or above it, unjudged from `unjudged_above`."""

    def measure(rate: int) -> tuple[SloCheck, dict[str, object]]:
        cell = {"cell_id": f"c{rate}", "p99_ms": 100.0}
        if rate >= unjudged_above:
            return SloCheck(UNJUDGED, "invalid: load generator behind"), cell
        if rate >= capacity:
            return SloCheck(FAIL, "p99 900 ms > 500 ms"), cell
        return SloCheck(PASS, "p99 100 ms"), cell

    return measure


def test_search_climbs_the_ladder_then_bisects_the_bracket() -> None:
    search = run_search(Search("chat", "sync", "httpx", 1), LADDER, 3, fake(290))
    # Ladder to the first miss (400), then 3 halvings of [200, 400].
    assert list(search.tried) == [50, 100, 200, 400, 300, 250, 275]
    got = capacity_row(search, SLO)
    assert (got["capacity_rps"], got["limit_rps"], got["bound"]) == (275, 300, "bracketed")
    assert got["limit_reason"] == "p99 900 ms > 500 ms"
    assert got["cells"] == 7 and got["cell_ids"].split()[0] == "c50"
    assert set(got) == set(CAPACITY_COLUMNS) and got["bound"] in CAPACITY_BOUNDS


def test_search_stops_when_the_bracket_is_one_rate_wide() -> None:
    search = run_search(Search("chat", "sync", "httpx", 1), [1, 2, 4], 10, fake(3))
    assert capacity_row(search, SLO)["capacity_rps"] == 2
    assert len(search.tried) == 4  # 1, 2, 4, then 3; nothing left between 2 and 3


@pytest.mark.parametrize(
    ("measure", "bound", "capacity", "limit"),
    [
        (fake(10), "below_lowest", None, 50),
        (fake(10_000), "above_highest", 800, None),
        (fake(10_000, unjudged_above=400), "load_side", 375, 400),
    ],
)
def test_search_bounds_say_what_the_number_is(measure, bound, capacity, limit) -> None:
    got = capacity_row(run_search(Search("chat", "sync", "httpx", 1), LADDER, 3, measure), SLO)
    assert (got["bound"], got["capacity_rps"], got["limit_rps"]) == (bound, capacity, limit)


def test_next_rate_never_repeats_a_rate() -> None:
    search = Search("chat", "sync", "httpx", 1)
    search.tried = {50: (SloCheck(PASS, ""), {}), 100: (SloCheck(FAIL, ""), {})}
    assert next_rate(search, [50, 100], 5) == 75


def test_write_capacity_leaves_empty_fields_for_missing_numbers(tmp_path) -> None:
    got = capacity_row(run_search(Search("hello", "sync", "-", 1), LADDER, 0, fake(10)), SLO)
    path = write_capacity(tmp_path, [got])
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CAPACITY_COLUMNS)
    assert ",,50,below_lowest," in lines[1]


# --- the matrix and the command line ----------------------------------------------------------


def test_rate_cells_have_their_own_ids_and_carry_the_slot_cap() -> None:
    spec = MatrixSpec(scenarios=["chat"], variants=["sync"], users=[], rates=[100, 400])
    cells = spec.cells()
    assert [c.cell_id for c in cells] == [
        "chat__sync-httpx__rps0100__r1",
        "chat__sync-httpx__rps0400__r1",
    ]
    assert {c.users for c in cells} == {spec.rate_slots}
    assert Cell("chat", "sync", "httpx", 10, 2).cell_id == "chat__sync-httpx__u010__r2"


def test_an_slo_turns_the_rates_into_searches_instead_of_cells() -> None:
    spec = MatrixSpec(
        scenarios=["chat", "hello"],
        variants=["sync", "async"],
        users=[],
        rates=[100, 200],
        slo="p99=500ms",
        repeats=2,
        skip=["hello/async"],
    )
    assert spec.cells() == []
    searches = spec.searches()
    assert len(searches) == 2 * 3  # chat sync, chat async, hello sync; two passes
    assert searches[0] == ("chat", "sync", "httpx", 1) and searches[-1][3] == 2
    assert spec.estimate_s() > 0


@pytest.mark.parametrize(
    "bad",
    [
        {"users": [], "rates": []},
        {"rates": [200, 100]},
        {"rates": [0]},
        {"slo": "p99=500ms"},
        {"slo": "p99=fast", "rates": [10]},
        {"arrivals": "bursty", "rates": [10]},
    ],
)
def test_matrix_rejects_bad_rate_settings(bad: dict) -> None:
    with pytest.raises(ValueError):
        MatrixSpec(**bad)


def test_cli_takes_rate_and_slo_and_refuses_processes_with_hosts(capsys, tmp_path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    BenchOptions.add_cli_args(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path), "--rate", "50,100", "--slo", "p99=1s", "--users", ""]
    )
    spec = BenchOptions.from_cli_args(args).spec()
    assert (spec.rates, spec.slo, spec.users) == ([50, 100], "p99=1s", [])
    # Rate mode with several Locust processes splits the rate between them (issue 20): planned.
    assert main(["--out", str(tmp_path / "y"), "--rate", "50", "--locust-processes", "2",
                 "--scenarios", "hello", "--variants", "async", "--dry-run"]) == 0  # fmt: skip
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--locust-hosts", "a", "--locust-processes", "2"])
    assert "give one" in capsys.readouterr().err


# --- the open-loop summary --------------------------------------------------------------------


def rows(*items: tuple[float, float, float | None, str]) -> pd.DataFrame:
    """Raw rows (intended start, latency ms, lag ms or None if never sent, outcome)."""
    return pd.DataFrame(
        [
            {"ts": ts, "kind": "request", "name": "x", "latency_ms": ms, "ok": int(o == OK)}
            | {"outcome": o, "lag_ms": lag}
            for ts, ms, lag, o in items
        ]
    )


def test_open_loop_metrics_count_the_schedule_and_what_was_sent() -> None:
    got = open_loop_metrics(
        rows(
            (0.5, 10, 1, OK),  # before the window
            (1.0, 10, 2, OK),
            (1.5, 900, 400, OK),  # due in the window, sent 0.4 s late: still in it
            (1.9, 500, 300, OK),  # sent after the window
            (1.95, 50, None, CENSORED),  # never sent
        ),
        start=1.0,
        end=2.0,
        full_at=[1.9, 5.0],
    )
    assert got["scheduled"] == 4 and got["sent"] == 2
    assert got["achieved_rps"] == pytest.approx(2.0)
    assert got["slots_full"] is True
    assert got["send_lag_p99_ms"] == pytest.approx(398.0)


def test_behind_blames_the_load_side_only_when_the_server_did_not_hold_every_connection() -> None:
    kept_up = {"scheduled": 100, "sent": 96, "slots_full": False}
    assert behind(kept_up, 50.0) == ""
    short = {"scheduled": 100, "sent": 80, "slots_full": False}
    assert behind(short, 50.0).startswith(f"{LOADGEN_BEHIND}: sent 80 of the 100")
    # Every connection busy and the load generator's core not saturated: the server's queue.
    assert behind(short | {"slots_full": True}, 50.0) == ""
    assert behind(short | {"slots_full": True}, 99.0).startswith(LOADGEN_BEHIND)
    assert behind(None, 99.0) == ""


def test_summary_row_carries_the_offered_rate() -> None:
    doc = {"scenario": "chat", "variant": "sync", "client": "httpx", "users": 500, "repeat": 1}
    doc |= {"cell_id": "chat__sync-httpx__rps0400__r1", "status": "ok"}
    doc |= {"offered_rps": 400, "metrics": {"achieved_rps": 399.0, "slots_full": False}}
    got = summary_row(doc)
    assert (got["offered_rps"], got["achieved_rps"], got["slots_full"]) == (400, 399.0, False)
    assert summary_row(doc | {"offered_rps": None})["offered_rps"] is None
