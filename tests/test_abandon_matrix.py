"""loadtests/matrices/abandon.toml: what a request whose client has gone costs (issue 21)."""

from pathlib import Path

from loadtests.matrix import MatrixSpec
from loadtests.scenarios import SCENARIOS

MATRIX = Path(__file__).resolve().parent.parent / "loadtests" / "matrices" / "abandon.toml"


def test_the_abandon_matrix_runs_every_style_with_and_without_the_fix_in_minutes() -> None:
    spec = MatrixSpec.from_toml(MATRIX)
    assert spec.scenarios == ["chat_abandon", "items_wait"]
    assert set(spec.variants) == {"sync", "async", "blocking"}
    assert SCENARIOS["chat_abandon"].proxy and SCENARIOS["chat_abandon"].locustfile == "abandon.py"
    (arm,) = spec.arms
    assert arm.env == {"cancel_on_disconnect": True}
    assert set(arm.variants) == set(spec.variants) and set(arm.scenarios) == set(spec.scenarios)
    cells = spec.cells()
    assert len(cells) == 24 and {c.arm for c in cells} == {"", "cancel"}
    assert spec.estimate_s() < 5 * 60
    # Every user gives up before its answer could come: the upstream's and the query's wait.
    assert spec.request_timeout_s < spec.upstream_latency_ms("chat_abandon") / 1000
    assert spec.request_timeout_s < spec.db_wait_ms / 1000
