"""The results contract's new columns and the verdicts' method, on small hand-built runs."""

import csv
import json
import math
import tempfile
from pathlib import Path

import pandas as pd
import pytest

import contract
from analysis.document import Table, to_markdown
from analysis.judge.caveats import caveats, grouped
from analysis.judge.cells import outcomes
from analysis.judge.noise import scenario_noise
from analysis.judge.observer import observer_effect
from analysis.judge.quiet import Calibration, comparability, upstream_drift
from analysis.judge.rules import CONFIRMS, PARTLY
from analysis.judge.samples import fmt_pct, tail
from analysis.judge.transform import aggregate, stalls
from analysis.judge.verdict import decide_verdicts
from analysis.load import load_run, load_summary
from analysis.load.derive import derive
from analysis.report.build import style_table, verdict_table
from analysis.report.compare import write_compare
from analysis.report.trust import latency_blocks, observer_blocks, quiet_blocks
from tests.analysis_fixtures import write_summary

TOKENS = 40


def cell(
    scenario: str,
    variant: str,
    users: int,
    repeat: int,
    rps: float,
    client: str = "-",
    arm: str = "",
    **extra: object,
) -> dict[str, object]:
    """One summary row with every contract column, steady and valid unless `extra` says."""
    mean_ms = 1000 * users / rps if rps else math.nan
    ok = int(rps * 10)
    row: dict[str, object] = dict.fromkeys(contract.SUMMARY_COLUMNS, "")
    arm_id = f"__{arm}" if arm else ""
    row.update(
        scenario=scenario,
        variant=variant,
        client=client,
        arm=arm,
        users=users,
        repeat=repeat,
        requests=ok,
        ok=ok,
        errors=0,
        timeouts=0,
        censored=0,
        failures=0,
        rps=rps,
        p50_ms=mean_ms,
        p90_ms=mean_ms * 1.3,
        p95_ms=mean_ms * 1.5,
        p99_ms=mean_ms * 2,
        max_ms=mean_ms * 3,
        little_ratio=1.0,
        steady=True,
        stalled=False,
        server_cpu_pct=90.0,
        cpu_ms_per_req=900 / rps if rps else math.nan,
        loadgen_cpu_pct=50.0,
        valid=True,
        status="ok",
        cell_id=f"{scenario}__{variant}-{'none' if client == '-' else client}__u{users:03d}"
        f"{arm_id}__r{repeat}",
        threadpool_tokens=TOKENS,
        observe=not arm,
    )
    row.update(extra)
    return row


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Rows as the orchestrator writes them, typed and derived as load_run does it (a CSV round
    trip through the loader)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_summary(Path(tmp) / "summary.csv", rows)
        summary, missing = load_summary(path)
    return derive(summary, missing)[0]


def write(root: Path, name: str, rows: list[dict[str, object]], manifest: dict) -> Path:
    run = root / name
    run.mkdir(parents=True)
    write_summary(run / "summary.csv", rows)
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def md(table: Table) -> str:
    return to_markdown([table], Path("."))


# --- the sample-count rule and censored lower bounds -------------------------------------------


def test_sample_count_rule_thresholds() -> None:
    assert [contract.min_samples(q) for q in (50, 90, 95, 99)] == [20, 100, 200, 1000]
    # The contract applies the rule where summary.csv is written; the report reads the result.
    ruled = contract.apply_sample_rule({"ok": 999, "censored": 0, "p99_ms": 300.0, "p50_ms": 9.0})
    assert ruled["p99_ms"] is None and ruled["p99_ms_raw"] == 300.0 and ruled["p50_ms"] == 9.0
    assert fmt_pct(ruled["p99_ms"], ruled["latency_n"]) == "n too small (n=999)"
    assert fmt_pct(300.0, 1000) == "300 ms"
    assert fmt_pct(None) == "n/a"
    # A percentile at or above the smallest censored age is a lower bound.
    assert fmt_pct(300.0, 5000, censored_min_ms=250.0) == "≥ 300 ms"
    assert fmt_pct(300.0, 5000, censored_min_ms=300.0) == "≥ 300 ms"
    assert fmt_pct(200.0, 5000, censored_min_ms=250.0) == "200 ms"


def test_report_hides_an_unsupported_p99_and_marks_lower_bounds() -> None:
    # 500 ok + 12 censored (the oldest at least 150 ms old when the cell ended): n = 512.
    censored = {"ok": 500, "censored": 12, "censored_min_ms": 150.0}
    rows = [
        cell("chat", "sync", 50, r, 50.0, client="httpx", **censored, p50_ms=100.0)
        | {"p90_ms": 140.0, "p95_ms": 170.0, "p99_ms": 400.0, "max_ms": 900.0}
        for r in (1, 2)
    ] + [cell("chat", "async", 50, r, 100.0, client="httpx") for r in (1, 2)]
    decided = decide_verdicts(frame(rows))
    text = to_markdown(latency_blocks(decided), Path("."))
    line = next(x for x in text.splitlines() if "sync: def" in x)
    assert "| 512 | 100 ms | 140 ms | ≥ 170 ms | n too small (n=512) | ≥ 900 ms |" in line
    # Where a tail figure is needed, the highest percentile n supports is used and named.
    assert "50/s (p95 (n=512) ≥ 170 ms)" in md(style_table(decided))
    (v,) = decided.verdicts
    assert v.tail == "p95 (n=512)"  # the smaller n of the two styles decides
    assert "lower bound" in v.text
    row = decided.counted.set_index("style").loc["sync"]
    t = tail(row)
    assert t is not None and t.label == "p95 (n=512)" and t.bound


# --- steady state and stalls -------------------------------------------------------------------


def test_not_steady_cell_is_flagged_and_kept_out_of_the_verdict() -> None:
    rows = [
        cell("chat", "sync", 50, 1, 100.0, client="httpx"),
        cell("chat", "sync", 50, 2, 102.0, client="httpx"),
        cell("chat", "async", 50, 1, 200.0, client="httpx"),
        cell("chat", "async", 50, 2, 202.0, client="httpx"),
        # A third async repeat not in a steady state: Little's law off by 60%.
        cell("chat", "async", 50, 3, 900.0, client="httpx", little_ratio=1.6, steady=False),
    ]
    s = frame(rows)
    assert list(outcomes(s)) == ["ok"] * 4 + ["not steady"]
    decided = decide_verdicts(s)
    async_row = decided.counted.set_index("style").loc["async"]
    assert async_row["repeats"] == 2 and async_row["rps_hi"] == 202.0
    (v,) = decided.verdicts
    assert v.clear and v.leader == "async" and v.ratio[0] == pytest.approx(201 / 101)
    found = [c for c in caveats(s, decided) if c.kind == "not steady"]
    assert len(found) == 1 and found[0].cell == "chat__async-httpx__u050__r3"
    assert "1.60" in found[0].detail and "kept out of every verdict" in found[0].detail


def test_stalled_style_is_named_in_the_verdict_and_the_rules_never_a_ratio() -> None:
    evidence = (
        "no completion for 14.2 s with 180 in flight; server CPU 2%; threadpool 40/40 in use, "
        "160 waiting; db pool 15 checked out"
    )
    rows = []
    for r in (1, 2, 3):
        rows += [
            cell("items_read", "sync", 50, r, 900.0 + r),
            cell("items_read", "async", 50, r, 600.0 + r),
            cell("items_read", "blocking", 50, r, 1200.0 + r),
            cell("items_read", "sync", 200, r, 0.0, stalled=True, stall_evidence=evidence),
            cell("items_read", "async", 200, r, 550.0 + r),
            cell("items_read", "blocking", 200, r, 1000.0 + r),
        ]
    decided = decide_verdicts(frame(rows))
    (v,) = decided.verdicts
    assert v.users == 200 and v.leader == "blocking" and v.runner_up == "async"
    named = f"`sync` stalled at 200 users in 3 of 3 repeats: {evidence}"
    assert named in v.text
    assert "inf" not in v.text and "∞" not in v.text
    aiosqlite, _ = v.checks
    # The rule needs `sync`: it says it stalled and tests at the highest load where it did not.
    assert named in aiosqlite.detail and "tested at 50 users instead" in aiosqlite.detail
    assert aiosqlite.outcome == CONFIRMS  # async x0.67 of sync at 50 users: not faster
    table = md(verdict_table(decided.verdicts))
    assert "inf" not in table and "stalled at 200 users in 3 of 3 repeats" in table
    assert "stalled (3 of 3 repeats)" in md(style_table(decided))
    assert [s.style for s in stalls(frame(rows))] == ["sync"]


# --- noise from the repeats --------------------------------------------------------------------


def test_noise_is_measured_from_the_repeats() -> None:
    # Each style varies 20% between its repeats: the run's noise is 20%, not a constant.
    rows = [
        cell("chat", v, 50, r, base * f, client="httpx")
        for v, base in (("sync", 100.0), ("async", 121.0))
        for r, f in ((1, 0.9), (2, 1.0), (3, 1.1))
    ]
    decided = decide_verdicts(frame(rows))
    assert decided.noises["chat"].value == pytest.approx(0.2)
    (v,) = decided.verdicts
    # x1.21 is beyond the 20% noise, but the interval (108.9/110 .. 133.1/90) includes parity:
    # the lead is inside the repeat interval, so no clear winner.
    assert v.ratio[0] == pytest.approx(1.21) and v.ratio[1] == pytest.approx(0.99)
    assert not v.clear and "no clear winner" in v.text and "includes parity" in v.text
    # A lead outside the interval and beyond the noise is clear.
    rows = [
        cell("chat", v, 50, r, base * f, client="httpx")
        for v, base in (("sync", 100.0), ("async", 200.0))
        for r, f in ((1, 0.9), (2, 1.0), (3, 1.1))
    ]
    (v,) = decide_verdicts(frame(rows)).verdicts
    assert v.clear and v.winners == ("async",) and v.ratio[1] > 1
    assert "noise 20%" in v.text


def test_noise_has_a_floor_and_one_repeat_gives_no_verdict() -> None:
    rows = [
        cell("chat", v, 50, 1, rps, client="httpx") for v, rps in (("sync", 100), ("async", 300))
    ]
    decided = decide_verdicts(frame(rows))
    assert decided.noises["chat"].value == contract.MIN_NOISE
    (v,) = decided.verdicts
    assert not v.clear and "one repeat: no interval" in v.text
    exact = [
        cell("chat", v, 50, r, 100.0, client="httpx") for v in ("sync", "async") for r in (1, 2)
    ]
    assert scenario_noise(aggregate(frame(exact)), "chat").value == contract.MIN_NOISE


# --- hello: judged by CPU per request ----------------------------------------------------------


def test_hello_is_judged_by_cpu_per_request_counting_load_generator_bound_cells() -> None:
    assert contract.VERDICT_METRIC == {"hello": "cpu_ms_per_req"}
    saturated = {"valid": False, "invalid_reason": "load generator at 96% of its core"}
    rows = []
    for r in (1, 2):
        rows += [
            cell("hello", "sync", 200, r, 4000.0 + r, cpu_ms_per_req=0.25 + r / 1000),
            # Locust's limit, not the server's: invalid, but the server's CPU is still its own.
            cell("hello", "async", 200, r, 4100.0 + r, cpu_ms_per_req=0.12 + r / 1000, **saturated),
            # Invalid for another reason: never counted.
            cell(
                "hello",
                "blocking",
                200,
                r,
                4100.0,
                cpu_ms_per_req=0.01,
                valid=False,
                invalid_reason="reached 150 of 200 users",
            ),
        ]
    rows.append(
        cell("hello", "async", 200, 3, 4000.0, cpu_ms_per_req=0.01, stalled=True, **saturated)
    )
    s = frame(rows)
    decided = decide_verdicts(s)
    (v,) = decided.verdicts
    assert v.metric == "cpu_ms_per_req" and v.lower_is_better
    assert v.clear and v.winners == ("async",) and v.runner_up == "sync"
    # Lower is better: the ratio is sync's CPU per request over async's.
    assert v.ratio[0] == pytest.approx(0.2515 / 0.1215)
    assert "`sync` needs x2.07" in v.text and "server CPU per request" in v.text
    assert "blocking" not in set(decided.counted["style"])
    # Throughput alone would not have separated them (4,001 vs 4,101/s).
    assert decided.agg.set_index("style").index.tolist() == ["sync"]
    (rule,) = v.checks
    assert rule.outcome == CONFIRMS and "throughput not tested" in rule.detail
    table = md(verdict_table(decided.verdicts))
    assert "`cpu_ms_per_req` (lower is better" in table
    assert "load generator saturated in 2 of 2 repeats" in md(style_table(decided))
    invalid = [c for c in caveats(s, decided) if c.kind == "invalid cell"]
    counted_note = "still counted in the `hello` verdict"
    assert sum(counted_note in c.detail for c in invalid) == 2  # async, not blocking


# --- the docs rules test every part of their claim ----------------------------------------------


def test_blocking_rule_partly_confirms_when_far_below_but_not_near_one_over_latency() -> None:
    def verdict(blocking_rps: float, **extra: object):
        rows = [
            cell("chat", v, 200, r, rps, client="httpx", upstream_latency_ms=50.0, **extra)
            for v, rps in (("sync", 600.0), ("blocking", blocking_rps))
            for r in (1, 2)
        ]
        (v,) = decide_verdicts(frame(rows)).verdicts
        return v.checks[1]

    near = verdict(19.0)
    assert near.outcome == CONFIRMS and "x0.95 of it, within ±35%" in near.detail
    # Each part of the claim is tested or named as untested.
    assert "not tested: 'blocks the event loop' (loop lag not recorded)" in near.detail
    far = verdict(60.0)  # far below 600/s, but x3 of 1 / latency (20/s)
    assert far.outcome == PARTLY and "x3.00 of it, outside ±35%" in far.detail
    assert "1 / latency = 20/s (50 ms)" in far.detail
    calm = verdict(19.0, loop_lag_max_ms=20.0)  # near 1 / latency, yet the loop was not held
    assert calm.outcome == PARTLY and "blocks the loop: no, max loop lag 20 ms" in calm.detail
    held = verdict(19.0, loop_lag_max_ms=480.0)
    assert held.outcome == CONFIRMS and "blocks the loop: yes" in held.detail


def test_trivial_endpoint_rule_tests_the_threadpool_part() -> None:
    rows = [
        cell("hello", v, 50, r, 4000.0, cpu_ms_per_req=cpu, threadpool_peak_in_use=tokens)
        for v, cpu, tokens in (("sync", 0.25, 40), ("async", 0.12, 0))
        for r in (1, 2)
    ]
    (v,) = decide_verdicts(frame(rows)).verdicts
    (check,) = v.checks
    assert check.outcome == CONFIRMS
    assert "skips the threadpool: yes, `async` used at most 0 threadpool tokens" in check.detail


def test_blocking_rule_moves_to_the_highest_load_where_blocking_counted() -> None:
    rows = []
    for r in (1, 2):
        rows += [
            cell("chat", "sync", 50, r, 240.0, client="httpx", upstream_latency_ms=50.0),
            cell("chat", "blocking", 50, r, 19.0, client="httpx", upstream_latency_ms=50.0),
            cell("chat", "sync", 200, r, 600.0, client="httpx", upstream_latency_ms=50.0),
            cell(
                "chat",
                "async",
                200,
                r,
                800.0,
                client="aiohttp",
                upstream_latency_ms=50.0,
            ),
            cell(
                "chat",
                "blocking",
                200,
                r,
                19.0,
                client="httpx",
                upstream_latency_ms=50.0,
                little_ratio=0.5,
                steady=False,
            ),
        ]
    (v,) = decide_verdicts(frame(rows)).verdicts
    check = v.checks[1]
    assert v.users == 200 and check.outcome == CONFIRMS
    assert "`blocking` has no counted cell at 200 users" in check.detail
    assert "tested at 50 users instead" in check.detail and "at 50 users `blocking`" in check.detail


# --- calibration, upstream drift, compare -------------------------------------------------------


def calibration_entries(*speeds: float) -> list[dict[str, object]]:
    labels = ["before", *(f"after pass {i}" for i in range(1, len(speeds)))]
    return [
        {
            "label": lab,
            "ts": 1.8e9 + 60 * i,
            "python_loop_per_s": 2e7 * s,
            "asgi_hello_per_s": 9e3 * s,
        }
        for i, (lab, s) in enumerate(zip(labels, speeds, strict=True))
    ]


def test_calibration_drift_warns_above_the_runs_noise() -> None:
    rows = [
        cell("chat", v, 50, r, rps * f, client="httpx")
        for v, rps in (("sync", 100.0), ("async", 300.0))
        for r, f in ((1, 0.98), (2, 1.02))
    ]
    s = frame(rows)
    decided = decide_verdicts(s)  # noise: the 5% floor
    quiet = {"calibration": calibration_entries(1.0, 0.99, 1.01)}
    assert not [c for c in caveats(s, decided, manifest=quiet) if c.kind == "calibration drift"]
    text = to_markdown(quiet_blocks(quiet, decided), Path("."))
    assert "| max drift from the first |  | 1.0% | 1.0% |" in text and "stays within" in text
    noisy = {"calibration": calibration_entries(1.0, 0.97, 0.88)}
    found = [c for c in caveats(s, decided, manifest=noisy) if c.kind == "calibration drift"]
    assert len(found) == 2 and "drifted 12.0%" in found[0].detail
    text = to_markdown(quiet_blocks(noisy, decided), Path("."))
    assert "**Warning: Python loop iterations/s drifted 12.0%" in text
    assert "smallest noise threshold (`chat` 5%)" in text
    missing = caveats(s, decided, manifest={})
    assert [c.kind for c in missing if c.kind.startswith("calibration")] == ["calibration"]
    assert "Not recorded" in to_markdown(quiet_blocks({}, decided), Path("."))


def test_upstream_drift_per_proxy_scenario() -> None:
    rows = [
        cell("chat", "sync", 50, r, 100.0, client="httpx", upstream_latency_ms=50.0)
        | {"upstream_drift_ms": drift, "upstream_served_ms": 50.0 + drift}
        for r, drift in ((1, 1.0), (2, 7.5))
    ]
    s = frame(rows)
    (row,) = upstream_drift(s).to_dict("records")
    assert (row["median_ms"], row["max_ms"], row["warn"]) == (4.25, 7.5, True)
    found = [c for c in caveats(s, decide_verdicts(s)) if c.kind == "upstream drift"]
    assert [c.cell for c in found] == ["chat__sync-httpx__u050__r2"]
    assert "57.5 ms against 50 ms configured (+7.5 ms, 15% > 10%)" in found[0].detail


def test_comparability_sentence() -> None:
    base = Calibration(tuple(calibration_entries(1.0, 1.0)))
    close = Calibration(tuple(calibration_entries(1.04, 1.06)))
    slow = Calibration(tuple(calibration_entries(0.8, 0.8)))
    assert comparability(base, close, "a", "b").startswith(
        "comparable: machine speed differs by 5.0%"
    )
    text = comparability(base, slow, "a", "b")
    assert "machine speed differs by 20.0%" in text and "not comparable in absolute" in text
    assert "ratios between styles" in text
    assert comparability(None, base, "a", "b") == "not comparable: no calibration recorded in `a`"
    assert comparability(base, None, "a", "b") == "not comparable: no calibration recorded in `b`"


def test_compare_prints_calibration_and_comparability(tmp_path: Path) -> None:
    rows = [
        cell("chat", v, 50, r, rps, client="httpx")
        for v, rps in (("sync", 100.0), ("async", 300.0))
        for r in (1, 2)
    ]
    a = write(tmp_path, "a", rows, {"calibration": calibration_entries(1.0, 1.0)})
    b = write(tmp_path, "b", rows, {"calibration": calibration_entries(0.85, 0.85)})
    c = write(tmp_path, "c", rows, {})
    text = write_compare(a, b, tmp_path / "ab").markdown.read_text()
    assert "machine speed differs by 15.0%" in text and "Not comparable in absolute" in text
    assert "| before | 20,000,000 | 9,000 |" in text and "| before | 17,000,000 | 7,650 |" in text
    text = write_compare(a, c, tmp_path / "ac").markdown.read_text()
    assert "Not comparable: no calibration recorded in `c`" in text


# --- the observer effect -----------------------------------------------------------------------


def test_observer_effect_from_an_arm_pair() -> None:
    rows = []
    for r, f in ((1, 0.99), (2, 1.01)):
        rows += [
            cell("chat", "sync", 50, r, 200.0 * f, client="httpx"),
            cell("chat", "async", 50, r, 300.0 * f, client="httpx"),
            # The same cells with /metrics and Server-Timing off: 10% faster.
            cell("chat", "sync", 50, r, 220.0 * f, client="httpx", arm="noobs"),
        ]
    s = frame(rows)
    decided = decide_verdicts(s)
    # The arm never mixes into the styles' aggregates or verdicts.
    assert decided.agg.set_index("style").loc["sync", "rps_hi"] == pytest.approx(202.0)
    assert decided.agg.set_index("style").loc["sync", "repeats"] == 2
    (row,) = observer_effect(s).to_dict("records")
    assert row["arm"] == "noobs" and row["style"] == "sync" and row["users"] == 50
    assert row["rps_ratio"] == pytest.approx(200 / 220)
    assert row["rps_ratio_lo"] == pytest.approx(198 / 222.2)
    assert row["rps_overhead_pct"] == pytest.approx((1 - 200 / 220) * 100)
    text = to_markdown(observer_blocks(s), Path("."))
    assert "observing cost a median of +9.1% of the throughput" in text
    assert (
        "| `noobs` | `chat` | sync: def | 50 | 200/s / 220/s | x0.91 (0.89-0.93) | +9.1% |" in text
    )
    assert "Not measured" in to_markdown(observer_blocks(s[s["arm"] == ""]), Path("."))


# --- an older run's missing columns -------------------------------------------------------------


def test_old_run_derives_what_it_can_and_names_it(tmp_path: Path) -> None:
    old = [
        "scenario", "variant", "client", "users", "repeat", "requests", "failures", "rps",
        "p50_ms", "p99_ms", "server_cpu_pct", "cut_off", "valid", "invalid_reason", "status",
        "reason", "cell_id",
    ]  # fmt: skip
    rows = [
        cell("items_read", "sync", 200, 1, 0.0, requests=0, cut_off=200, server_cpu_pct=2.5),
        cell("items_read", "async", 200, 1, 500.0, requests=5000, failures=10),
    ]
    run = tmp_path / "old"
    run.mkdir()
    pd.DataFrame(rows)[old].to_csv(run / "summary.csv", index=False)
    (run / "manifest.json").write_text("{}")
    loaded = load_run(run)
    assert "steady" in loaded.missing_columns and "arm" in loaded.missing_columns
    s = loaded.summary.set_index("variant")
    assert s.loc["async", "ok"] == 4990 and s.loc["async", "cpu_ms_per_req"] == pytest.approx(
        90.0 * 10 / 500
    )
    assert bool(s.loc["sync", "stalled"]) and not bool(s.loc["async", "stalled"])
    assert "200 still in flight" in s.loc["sync", "stall_evidence"]
    assert all(bool(x) for x in s["steady"])  # not checked: not held against the cells
    assert any("`stalled`" in d for d in loaded.derived)
    kinds = grouped(
        caveats(
            loaded.summary, decide_verdicts(loaded.summary), loaded.missing_columns, loaded.derived
        )
    )
    assert {"stalled", "missing columns", "derived columns", "calibration"} <= set(kinds)


def test_calibration_must_be_a_list_of_objects(tmp_path: Path) -> None:
    from analysis.load import RunFormatError

    run = write(tmp_path, "r", [cell("chat", "sync", 50, 1, 100.0)], {"calibration": {"x": 1}})
    with pytest.raises(RunFormatError, match="`calibration` must be a list of objects"):
        load_run(run)
    (run / "manifest.json").write_text(
        json.dumps({"calibration": [{"label": "before", "ts": "x"}]})
    )
    with pytest.raises(RunFormatError, match=r"`calibration\[0\]\.ts` must be a number"):
        load_run(run)


def test_report_compares_the_machine_with_the_reference_run() -> None:
    from analysis.judge.quiet import calibration
    from analysis.report.trust import reference_blocks

    def manifest(speed: float) -> dict:
        return {
            "calibration": [
                {"label": "before", "ts": 1.0, "python_loop_per_s": speed, "asgi_hello_per_s": 5e4}
            ]
        }

    run = calibration(manifest(2e7))
    assert run is not None
    assert reference_blocks(run, None) == []
    same = reference_blocks(run, ("results/reference", manifest(2.04e7)))
    assert "comparable: machine speed differs by" in same[0].text and "Warning" not in same[0].text
    slower = reference_blocks(run, ("results/reference", manifest(1.4e7)))
    assert "**Warning:** not comparable" in slower[0].text
    older = reference_blocks(run, ("results/reference", {}))
    assert "no calibration recorded in `results/reference`" in older[0].text


def test_compare_says_whether_verdicts_agree() -> None:
    from analysis.judge.verdict import Verdict
    from analysis.report.compare import verdict_agreement

    def won(scenario: str, leader: str, clear: bool = True) -> Verdict:
        return Verdict(
            scenario, 0.05, users=200, leader=leader, runner_up="sync", clear=clear, tied=(leader,)
        )

    a = [won("chat", "async"), won("cpu", "async", clear=False), won("hello", "async")]
    b = [won("chat", "async"), won("cpu", "sync", clear=False), won("hello", "sync")]
    rows = verdict_agreement(a, b)
    assert [r[0] for r in rows] == ["`chat`", "`cpu`", "`hello`"]
    # Both "no clear winner" agree whoever led; a different winner does not.
    assert [r[-1] for r in rows] == ["same", "same", "**differs**"]
    assert verdict_agreement(a, [])[0][3:5] == ["-", "not judged"]


def test_latency_distribution_uses_the_tables_population(tmp_path: Path) -> None:
    # The CDF chart reads what the percentiles read: the window's ok and censored requests.
    from analysis.load.run import load_run
    from analysis.plot.charts import cdf_samples
    from tests.analysis_fixtures import T0, write_run

    path = write_run(tmp_path)
    run = load_run(path)
    row = run.summary[(run.summary["scenario"] == "chat") & (run.summary["repeat"] == 1)].iloc[0]
    rows = [
        (T0 + 5, "request", "x", 10.0, 1, "ok"),
        (T0 + 6, "request", "x", 20.0, 0, "censored"),
        (T0 + 7, "request", "x", 30.0, 0, "error"),
        (T0 + 1, "request", "x", 99_999.0, 1, "ok"),  # warm-up: not in the window
    ]
    with (path / row["cell_id"] / "requests.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ts", "kind", "name", "latency_ms", "ok", "outcome"])
        writer.writerows(rows)
    samples = cdf_samples(run, "chat", int(row["users"]))
    mine = samples[row["style"]]
    assert 10.0 in mine and 20.0 in mine
    assert 30.0 not in mine and 99_999.0 not in mine
