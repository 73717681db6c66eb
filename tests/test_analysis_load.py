"""Loading a run folder: the good case and every way a file can be wrong."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import contract
from analysis.__main__ import main as analysis_main
from analysis.load import RunFormatError, load_cell, load_requests, load_run, load_window
from contract import SUMMARY_COLUMNS
from tests.analysis_fixtures import FAILED_CELL, INVALID_CELL, T0, write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path, raw=False)


def edit_summary(run_dir: Path, old: str, new: str, count: int = 1) -> None:
    path = run_dir / "summary.csv"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


def test_good_folder_loads_typed_columns(run_dir: Path) -> None:
    run = load_run(run_dir)
    s = run.summary
    assert run.name == "fixture-run"
    assert run.manifest["machine"]["cpu_count"] == 2
    assert run.missing_columns == ()
    assert s["users"].dtype == "int64" and s["repeat"].dtype == "int64"
    assert s["rps"].dtype == "float64" and s["valid"].dtype == bool
    assert s["threadpool_tokens"].dtype == "Int64"
    assert s["loop_lag_p99_ms"].dtype == "float64"  # a mechanism column beyond the contract
    assert set(s["style"]) == {"sync", "async", "async (aiohttp)", "blocking"}
    failed = s.set_index("cell_id").loc[FAILED_CELL]
    assert failed["status"] == "failed" and not failed["valid"] and pd.isna(failed["rps"])
    assert not s.set_index("cell_id").loc[INVALID_CELL, "valid"]
    # Empty optional fields are missing values, not zeros or strings.
    assert s.loc[s["scenario"] == "hello", "ttft_p50_ms"].isna().all()


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RunFormatError, match="not a run folder"):
        load_run(tmp_path / "nope")


@pytest.mark.parametrize("name", ["summary.csv", "manifest.json"])
def test_missing_file_is_named(run_dir: Path, name: str) -> None:
    (run_dir / name).unlink()
    with pytest.raises(RunFormatError, match="file is missing") as info:
        load_run(run_dir)
    assert info.value.path.name == name


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "file is empty"),
        ("scenario,variant\n", "has a header but no rows"),
        ("users,repeat\nx,y\n", "missing required column"),
        ('scenario,variant\n"unclosed,x\n', "not a readable CSV"),
        ("a,b\n1,2\n3,4,5,6\n", "not a readable CSV"),
    ],
    ids=["empty", "header-only", "wrong-header", "bad-quote", "ragged"],
)
def test_malformed_csv(run_dir: Path, content: str, problem: str) -> None:
    (run_dir / "summary.csv").write_text(content)
    with pytest.raises(RunFormatError, match=problem) as info:
        load_run(run_dir)
    assert "summary.csv" in str(info.value)


def test_missing_required_column_lists_available(run_dir: Path) -> None:
    frame = pd.read_csv(run_dir / "summary.csv", dtype=str, keep_default_na=False)
    frame.drop(columns=["rps"]).to_csv(run_dir / "summary.csv", index=False)
    with pytest.raises(RunFormatError, match=r"\['rps'\]; available columns: .*'p50_ms'"):
        load_run(run_dir)


def test_missing_optional_column_is_reported_not_fatal(run_dir: Path) -> None:
    frame = pd.read_csv(run_dir / "summary.csv", dtype=str, keep_default_na=False)
    frame.drop(columns=["p90_ms", "cut_off"]).to_csv(run_dir / "summary.csv", index=False)
    run = load_run(run_dir)
    assert run.missing_columns == ("p90_ms", "cut_off")  # in the contract's order
    assert run.summary["p90_ms"].isna().all()


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (",10,,1,", ",ten,,1,", r"column `users` \(int\) is not an integer at line 2: 'ten'"),
        (",10,,1,", ",10.5,,1,", r"column `users` \(int\) is not an integer"),
        (",True,", ",maybe,", r"column `steady` \(bool\) is not a boolean"),
        (",ok,,hello", ",weird,,hello", r"`status`: unknown values \['weird'\]"),
    ],
    ids=["int-text", "int-fraction", "bool", "status"],
)
def test_wrong_column_types(run_dir: Path, old: str, new: str, problem: str) -> None:
    edit_summary(run_dir, old, new)
    with pytest.raises(RunFormatError, match=problem):
        load_run(run_dir)


def test_wrong_float_names_line(run_dir: Path) -> None:
    frame = pd.read_csv(run_dir / "summary.csv", dtype=str, keep_default_na=False)
    frame.loc[4, "rps"] = "fast"
    frame.to_csv(run_dir / "summary.csv", index=False)
    with pytest.raises(RunFormatError, match=r"`rps` \(float\) is not a number at line 6: 'fast'"):
        load_run(run_dir)


def test_duplicate_cell(run_dir: Path) -> None:
    lines = (run_dir / "summary.csv").read_text().splitlines()
    (run_dir / "summary.csv").write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(RunFormatError, match="appears twice"):
        load_run(run_dir)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"versions": "1.0"}), "`versions` must be an object"),
    ],
    ids=["syntax", "array", "section-type"],
)
def test_malformed_manifest(run_dir: Path, content: str, problem: str) -> None:
    (run_dir / "manifest.json").write_text(content)
    with pytest.raises(RunFormatError, match=problem) as info:
        load_run(run_dir)
    assert info.value.path.name == "manifest.json"


def test_manifest_extra_and_absent_keys_are_fine(run_dir: Path) -> None:
    (run_dir / "manifest.json").write_text(json.dumps({"something_new": [1, 2]}))
    assert load_run(run_dir).manifest == {"something_new": [1, 2]}


def test_requests_file(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    path.write_text(
        "ts,kind,name,latency_ms,ok\n1.0,request,GET /,12.5,1\n1.1,ttft,POST /,3.0,1\n"
        "1.2,request,GET /,99.0,0\n"
    )
    frame = load_requests(path, kinds=["request"])
    assert list(frame["latency_ms"]) == [12.5, 99.0]
    assert list(frame["ok"]) == [True, False]


def test_requests_file_bad_latency_names_line(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    path.write_text("ts,kind,name,latency_ms,ok\n1.0,ttft,x,1,1\n1.0,request,x,slow,1\n")
    with pytest.raises(RunFormatError, match=r"requests.csv: column `latency_ms`.*line 3: 'slow'"):
        load_requests(path, kinds=["request"])


def test_loads_what_the_orchestrator_writes(tmp_path: Path) -> None:
    """Contract check: summary.csv as `loadtests.summary.write_summary` writes it loads cleanly."""
    summary = pytest.importorskip("loadtests.summary")
    for status, valid in (("ok", True), ("ok", False), ("failed", False)):
        cell_id = f"chat__sync-httpx__u010__r{len(list(tmp_path.iterdir())) + 1}"
        (tmp_path / cell_id).mkdir()
        doc = {
            "cell_id": cell_id,
            "scenario": "chat",
            "variant": "sync",
            "client": "httpx",
            "users": 10,
            "repeat": len(list(tmp_path.iterdir())),
            "status": status,
            "reason": "" if status == "ok" else "server: exited",
            "valid": valid,
            "invalid_reason": "" if valid else "load generator at 97% of its core",
            "cut_off": 0 if status == "ok" else None,
            "settings": {"duration_s": 2, "warmup_s": 1, "threadpool_tokens": 40},
            "cpu": {"loadgen_pct": 50.0} if status == "ok" else {},
            "metrics": {"requests": 100, "failures": 1, "rps": 49.5, "p50_ms": 10.0, "p99_ms": 20.0}
            if status == "ok"
            else {},
        }
        (tmp_path / cell_id / "cell.json").write_text(json.dumps(doc))
    summary.write_summary(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    run = load_run(tmp_path)
    # Whatever the orchestrator writes of the contract loads; what it does not is named.
    written = pd.read_csv(tmp_path / "summary.csv", nrows=0).columns
    assert run.missing_columns == tuple(c for c in SUMMARY_COLUMNS if c not in written)
    assert list(run.summary["status"]) == ["ok", "ok", "failed"]
    assert list(run.summary["valid"]) == [True, False, False]
    assert run.summary["rps"].iloc[0] == 49.5 and pd.isna(run.summary["rps"].iloc[2])
    assert run.summary["upstream_latency_ms"].isna().all()


# --- damaged or incomplete runs (issue 13) ---------------------------------------------------

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"


def reference_copy(tmp_path: Path) -> Path:
    """The committed reference run's summary.csv and manifest.json, without its cell folders."""
    run = tmp_path / "reference-copy"
    run.mkdir()
    for name in ("summary.csv", "manifest.json"):
        shutil.copy(REFERENCE / name, run / name)
    return run


def test_a_summary_cut_mid_row_names_the_file_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = reference_copy(tmp_path)
    cut = (run / "summary.csv").read_bytes()[:3000]
    (run / "summary.csv").write_bytes(cut)
    line = cut.count(b"\n") + 1  # the row the cut went through
    with pytest.raises(RunFormatError, match=rf"line {line}\b") as info:
        load_run(run)
    assert info.value.path == run / "summary.csv"
    assert "truncated" in str(info.value)
    # The CLI: one line naming the file and the line, exit 2, no report and no charts.
    assert analysis_main(["report", str(run), "--reference", ""]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "summary.csv" in err and f"line {line}" in err
    assert not (run / "report.md").exists() and not (run / "charts").exists()


def test_a_summary_cut_at_a_field_boundary_is_caught_by_its_missing_line_break(
    tmp_path: Path,
) -> None:
    run = reference_copy(tmp_path)
    text = (run / "summary.csv").read_text()
    # Every field of the last row is there, but the writer never finished the row.
    (run / "summary.csv").write_text(text.rstrip("\n"))
    lines = text.count("\n")
    with pytest.raises(RunFormatError, match=rf"line {lines}, the last, does not end"):
        load_run(run)


def test_a_complete_run_lacks_nothing(tmp_path: Path) -> None:
    gaps = load_run(reference_copy(tmp_path)).completeness
    assert gaps.complete and gaps.problems() == [] and gaps.planned == 126


def test_planned_cells_without_a_row_are_listed(tmp_path: Path) -> None:
    run = reference_copy(tmp_path)
    lines = (run / "summary.csv").read_text().splitlines(keepends=True)
    (run / "summary.csv").write_text("".join(lines[:12]))  # the header and 11 cells
    planned = json.loads((run / "manifest.json").read_text())["cells"]
    kept = set(pd.read_csv(run / "summary.csv", dtype=str)["cell_id"])
    gaps = load_run(run).completeness
    assert not gaps.complete and gaps.planned == len(planned) == 126
    assert list(gaps.missing) == [c for c in planned if c not in kept] and len(gaps.missing) == 115
    assert gaps.interrupted == () and gaps.unsummarized == ()
    # One cell stopped mid-cell (a folder, no cell.json), one measured after summary.csv was
    # last written (a cell.json, no row).
    stopped, unwritten = gaps.missing[0], gaps.missing[1]
    (run / stopped).mkdir()
    (run / unwritten).mkdir()
    (run / unwritten / "cell.json").write_text("{}")
    gaps = load_run(run).completeness
    assert gaps.interrupted == (stopped,) and gaps.unsummarized == (unwritten,)
    assert unwritten not in gaps.missing and len(gaps.missing) == 114
    text = "\n".join(gaps.problems())
    assert "114 of the 126 cells manifest.json plans were never measured" in text
    assert f"1 of them stopped mid-cell (a folder without cell.json: `{stopped}`)" in text
    assert "1 cell folder holds a cell.json but no summary.csv row" in text
    assert f"`{unwritten}`" in text and "and 102 more" in text and "--resume" in text


def test_a_manifest_cells_entry_that_is_not_a_list_of_ids(tmp_path: Path) -> None:
    run = reference_copy(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "cells": 126}))
    with pytest.raises(RunFormatError, match="`cells` must be a list of cell ids") as info:
        load_run(run)
    assert info.value.path.name == "manifest.json"


def test_an_interrupted_last_session_is_named_until_a_resume_completes_it(tmp_path: Path) -> None:
    # An SLO run plans no cells up front (its searches pick the rates): the session tells.
    run = reference_copy(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    session = {"start": 1.0, "end": 2.0, "cells_planned": 126}
    stopped = [{**session, "interrupted": True}]
    (run / "manifest.json").write_text(json.dumps({**manifest, "sessions": stopped}))
    gaps = load_run(run).completeness
    assert not gaps.complete and gaps.last_session_interrupted
    assert gaps.problems()[0].startswith("The run's last session was interrupted")
    resumed = [*stopped, {**session, "interrupted": False}]
    (run / "manifest.json").write_text(json.dumps({**manifest, "sessions": resumed}))
    assert load_run(run).completeness.complete


# --- schema versions and cell.json through the contract's record (issue 21) -------------------


@pytest.mark.parametrize("version", [None, 1, contract.MANIFEST_SCHEMA_VERSION])
def test_every_manifest_schema_version_up_to_the_contract_s_loads(
    run_dir: Path, version: int | None
) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.pop("schema_version", None)
    if version is not None:
        manifest["schema_version"] = version
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert load_run(run_dir).manifest.get("schema_version", 1) == (version or 1)


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        (contract.MANIFEST_SCHEMA_VERSION + 1, "newer than this analysis reads"),
        (0, "must be a positive integer"),
        ("2", "must be a positive integer"),
        (True, "must be a positive integer"),
    ],
)
def test_a_manifest_of_another_schema_is_a_clear_error(
    run_dir: Path, version: object, problem: str
) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "schema_version": version}))
    with pytest.raises(RunFormatError, match=problem) as info:
        load_run(run_dir)
    assert info.value.path.name == "manifest.json"
    assert analysis_main(["report", str(run_dir)]) == 2


def test_cell_json_is_read_through_the_contract_s_record(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, raw=False)
    path = run_dir / INVALID_CELL / "cell.json"
    cell = load_cell(path)
    assert cell.cell_id == INVALID_CELL and cell.schema_version == 1
    assert load_window(path) == (T0 + 3, T0 + 13)
    # A field the record does not know, or one of the wrong type, names the file and the field.
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "no_such_field": 1}))
    with pytest.raises(RunFormatError, match=r"cell\.json: `no_such_field`") as info:
        load_cell(path)
    assert info.value.path == path and str(path) not in info.value.problem
    path.write_text(json.dumps({**record, "users": "many"}))
    with pytest.raises(RunFormatError, match="`users`"):
        load_window(path)
    newer = {**record, "schema_version": contract.CELL_SCHEMA_VERSION + 1}
    path.write_text(json.dumps(newer))
    with pytest.raises(RunFormatError, match="schema_version"):
        load_cell(path)
    assert load_window(run_dir / "no-such-cell" / "cell.json") is None


def test_a_summary_from_before_the_sample_rule_gets_the_contract_s_rule(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, raw=False)
    frame = pd.read_csv(run_dir / "summary.csv", dtype=str, keep_default_na=False)
    ruled = [c for c in contract.SUMMARY_COLUMNS if c.endswith("_raw") or c == "latency_n"]
    # As an orchestrator before the rule wrote it: no counts, no raw columns, every value kept.
    old = frame.drop(columns=ruled)
    rows = old["cell_id"] == "chat__sync-httpx__u010__r1"
    old.loc[rows, "p99_ms"] = "123.0"
    old.to_csv(run_dir / "summary.csv", index=False)
    run = load_run(run_dir)
    assert set(ruled) <= set(run.missing_columns)
    assert any("the sample rule applied" in d for d in run.derived)
    row = run.summary.set_index("cell_id").loc["chat__sync-httpx__u010__r1"]
    assert row["latency_n"] == row["ok"] + row["censored"] < contract.min_samples(99)
    assert pd.isna(row["p99_ms"]) and row["p99_ms_raw"] == 123.0
    assert row["p50_ms"] == row["p50_ms_raw"]
