"""Loading a run folder: the good case and every way a file can be wrong."""

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import RunFormatError, load_requests, load_run
from contract import SUMMARY_COLUMNS
from tests.analysis_fixtures import FAILED_CELL, INVALID_CELL, write_run


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
