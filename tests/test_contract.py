"""The results contract: one module, its names checked against the servers and the readers."""

import json
import re
from pathlib import Path

import pytest

import contract
from contract.cell import CellJudged, CellMechanisms, CellMetrics, CellResult
from loadtests.assess import assess
from loadtests.context import RunContext
from loadtests.locust_runner import LocustRun
from loadtests.matrix import MatrixSpec
from loadtests.measure import Collected, record
from loadtests.plan import plan_cell
from loadtests.process import CpuSampler, Pinning
from loadtests.scenarios import SCENARIOS
from loadtests.summary import summary_row
from servers.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def test_server_env_names_are_settings_fields() -> None:
    # A typo in a name the orchestrator passes to the servers fails here, not silently at runtime.
    fields = set(Settings.model_fields)
    assert set(contract.SERVER_ENV) <= fields, set(contract.SERVER_ENV) - fields
    prefix = Settings.model_config["env_prefix"]
    for name, variable in contract.SERVER_ENV.items():
        assert variable == f"{prefix}{name.upper()}"
    assert set(contract.SERVER_TIMEOUTS) <= fields


def test_scenarios_are_the_contracts() -> None:
    assert tuple(SCENARIOS) == contract.SCENARIOS


@pytest.mark.parametrize(("q", "n"), [(50, 20), (90, 100), (95, 200), (99, 1000), (100, 1)])
def test_min_samples(q: float, n: int) -> None:
    assert contract.min_samples(q) == n
    assert contract.supported(q, n) and not contract.supported(q, n - 1 if n > 1 else None)


def test_results_readme_documents_every_column_and_outcome() -> None:
    text = (REPO / "results" / "README.md").read_text()
    documented = set(re.findall(r"`([a-z0-9_]+)`", text))
    missing = [c for c in (*contract.SUMMARY_COLUMNS, *contract.RAW_COLUMNS) if c not in documented]
    assert not missing, f"results/README.md does not document {missing}"
    assert all(f"`{o}`" in text for o in contract.OUTCOMES)


# --- cell.json's sections, typed in full (issue 21) --------------------------------------------
REFERENCE = REPO / "results" / "reference"
REFERENCE_RUNS = sorted({p.parent.parent for p in REFERENCE.rglob("cell.json")})
SECTIONS = (CellMetrics, CellJudged, CellMechanisms)


@pytest.mark.parametrize(
    "run", REFERENCE_RUNS, ids=[str(r.relative_to(REPO)) for r in REFERENCE_RUNS]
)
def test_every_key_of_a_committed_cell_json_is_a_typed_field(run: Path) -> None:
    # A key left to `model_extra` can be written under one name and read under another.
    untyped: dict[str, str] = {}
    for path in sorted(run.glob("*/cell.json")):
        cell = CellResult.load(path)
        for name in ("metrics", "judged", "mechanisms"):
            section = getattr(cell, name)
            for key in section.model_extra or {}:
                untyped.setdefault(f"{name}.{key}", path.parent.name)
    assert not untyped, f"undeclared in contract/cell.py (key: first cell): {untyped}"


def test_every_percentile_its_raw_value_and_its_count_are_typed_metrics() -> None:
    fields = set(CellMetrics.model_fields)
    for column, (_, count) in contract.PERCENTILE_RULE.items():
        assert {column, contract.raw_column(column), count} <= fields, column


def test_a_cell_being_written_refuses_an_undeclared_key_and_an_old_file_keeps_one() -> None:
    with pytest.raises(ValueError, match="CellMetrics: undeclared achieved_rsp"):
        CellMetrics.new({"ok": 3, "achieved_rsp": 2.0})
    assert CellMetrics.new({"ok": 3, "achieved_rps": 2.0}).achieved_rps == 2.0
    with pytest.raises(ValueError, match="undeclared stall"):
        CellJudged.new({"stall": True})
    # The probe's sites are typed too.
    sites = {"thread_sites": {"app.py:3 time.sleep": 4}, "loop_site": "app.py:9 time.sleep"}
    judged = CellJudged.new(sites)
    assert judged.model_extra == {} and judged.thread_sites == sites["thread_sites"]
    old = CellResult.parse(
        {
            "cell_id": "hello__sync-none__u010__r1",
            "scenario": "hello",
            "variant": "sync",
            "client": "-",
            "users": 10,
            "repeat": 1,
            "status": "ok",
            "metrics": {"ok": 3, "retired_key": 1},
        }
    )
    assert old.metrics.model_extra == {"retired_key": 1} and old.metrics.achieved_rps is None


def test_results_readme_documents_every_cell_json_section_key() -> None:
    text = (REPO / "results" / "README.md").read_text()
    documented = set(re.findall(r"`([a-z0-9_]+)`", text))
    for section in SECTIONS:
        names = list(section.model_fields)
        missing = [n for n in names if n not in documented]
        assert not missing, f"results/README.md does not document {section.__name__} {missing}"


def test_a_measured_rate_cell_is_written_typed_and_read_back_the_same(tmp_path: Path) -> None:
    # 10 req/s offered for 10 s to a server that serves 2/s: each arrival sent on time (lag 0),
    # answered long after, most of them during the drain.
    spec = MatrixSpec(scenarios=["hello"], variants=["sync"], users=[], rates=[10])
    ctx = RunContext(out=tmp_path, pinning=Pinning((1,), (0,)))
    plan = plan_cell(spec.rate_cell("hello", "sync", contract.NO_CLIENT, 10, 1), spec, ctx)
    requests = tmp_path / "requests.csv"
    rows = [f"{100 + i / 10},request,GET /hello,{500 * i},1,ok,,,,0" for i in range(100)]
    requests.write_text("\n".join([",".join(contract.RAW_COLUMNS), *rows]) + "\n")
    meta = {
        "window_start": 100.0,
        "window_end": 110.0,
        "test_start": 99.0,
        "test_stop": 160.0,
        "spawned": plan.target_users,
    }
    collected = Collected(
        locust=LocustRun(0, False, 61.0),
        meta=meta,
        requests=requests,
        cpu=CpuSampler(),
        series=[],
        scrape_failures=0,
        server_exit=None,
        healthy_s=0.5,
        upstream=None,
    )
    assessed = assess(plan, collected, tmp_path, shared_load_core=True)
    result = record(plan, ctx, None, assessed, "", [])
    m = result.metrics
    assert (m.scheduled, m.sent, m.achieved_rps, m.rps) == (100, 100, 10.0, 10.0)
    assert m.served_rps == pytest.approx(1.7)  # completions at 100 + 0.6 i before 110
    assert m.p99_ms is None and m.p99_ms_raw is not None and m.slots_full is False
    assert not m.model_extra and not result.judged.model_extra
    assert CellResult.parse(json.loads(result.dump())).to_dict() == result.to_dict()
    row = summary_row(result)
    assert (row["achieved_rps"], row["served_rps"]) == (m.achieved_rps, m.served_rps)
