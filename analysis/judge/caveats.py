"""Every warning a reader needs before trusting a run, grouped by kind; none is ever dropped."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

import contract
from analysis.judge.cells import (
    FAILED,
    INVALID,
    NOT_STEADY,
    STALLED,
    column,
    load_side_only,
    metric_name,
    outcomes,
)
from analysis.judge.quiet import UPSTREAM_DRIFT_MAX, calibration, drifting_cells
from analysis.judge.samples import highest
from analysis.judge.transform import relative_spread, require_columns, sample_counts
from analysis.judge.verdict import Verdicts

# More failed requests than this in a cell deserves a look.
ERROR_RATE = 0.01
# The noise is the median cell's repeat spread, so half the cells exceed it by definition; a
# cell twice as spread as that is worth naming.
SPREAD_WARN_FACTOR = 2.0

# The groups, in the order the report lists them (most serious first).
KINDS: tuple[str, ...] = (
    "failed cell",
    STALLED,
    "invalid cell",
    NOT_STEADY,
    "censored requests",
    "n too small",
    "failed requests",
    "requests cut off",
    "inconsistent counts",
    "saturated load generator",
    "high run-to-run spread",
    "one repeat",
    "upstream drift",
    "calibration drift",
    "calibration",
    "verdict metric",
    "missing columns",
    "derived columns",
)


@dataclass(frozen=True)
class Caveat:
    """One warning: what kind, about which cell, and the detail."""

    kind: str
    cell: str
    detail: str


def caveats(
    summary: pd.DataFrame,
    decided: Verdicts,
    missing_columns: Sequence[str] = (),
    derived: Sequence[str] = (),
    manifest: Mapping[str, Any] | None = None,
) -> list[Caveat]:
    """Every warning about a run, grouped in KINDS order."""
    require_columns(summary, ["cell_id", "status", "valid"], "summary")
    out: list[Caveat] = []
    out += _flagged(summary, decided.metrics)
    out += _counts(summary)
    out += _spread(decided)
    out += _drift(summary)
    out += _calibration(manifest or {}, decided)
    out += [Caveat("verdict metric", s, n) for s, n in decided.metric_notes.items()]
    if missing_columns:
        out.append(
            Caveat(
                "missing columns",
                "summary.csv",
                f"{len(missing_columns)} contract column(s) absent (this run predates them), "
                f"left empty: {', '.join(f'`{c}`' for c in missing_columns)}",
            )
        )
    out += [Caveat("derived columns", "summary.csv", note) for note in derived]
    rank = {k: i for i, k in enumerate(KINDS)}
    return sorted(out, key=lambda c: rank.get(c.kind, len(rank)))


def grouped(warnings: Sequence[Caveat]) -> dict[str, list[Caveat]]:
    """Warnings by kind, in KINDS order (unknown kinds last)."""
    out: dict[str, list[Caveat]] = {}
    for w in warnings:
        out.setdefault(w.kind, []).append(w)
    rank = {k: i for i, k in enumerate(KINDS)}
    return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def _text(x: object, default: str = "no reason given") -> str:
    return str(x).strip() if x is not None and not pd.isna(x) and str(x).strip() else default  # type: ignore[call-overload]


def _flagged(summary: pd.DataFrame, metrics: Mapping[str, str]) -> list[Caveat]:
    out: list[Caveat] = []
    flags = outcomes(summary)
    for (_, row), flag in zip(summary.iterrows(), flags, strict=True):
        cell = str(row["cell_id"])
        if flag == FAILED:
            out.append(Caveat("failed cell", cell, _text(row.get("reason"))))
        elif flag == STALLED:
            gap = row.get("gap_max_s")
            longest = f" (longest gap without a completion {gap:.1f} s)" if pd.notna(gap) else ""
            evidence = _text(row.get("stall_evidence"), "no evidence recorded")
            out.append(Caveat(STALLED, cell, evidence + longest))
        elif flag == INVALID:
            detail = _text(row.get("invalid_reason"))
            metric = metrics.get(str(row["scenario"]), "rps")
            steady = bool(row.get("steady", True))
            if metric != "rps" and steady and load_side_only(row.get("invalid_reason")):
                detail += (
                    f" (still counted in the `{row['scenario']}` verdict, judged by "
                    f"{metric_name(metric)})"
                )
            out.append(Caveat("invalid cell", cell, detail))
        elif flag == NOT_STEADY:
            ratio = row.get("little_ratio")
            measured = (
                f"Little's law ratio users / (throughput x mean latency) = {ratio:.2f}"
                if ratio is not None and pd.notna(ratio)
                else "marked not steady"
            )
            out.append(
                Caveat(
                    NOT_STEADY,
                    cell,
                    f"{measured}; steady means within ±{contract.LITTLE_TOLERANCE:.0%} of 1"
                    f"{_unsteady_evidence(row)}: kept out of every verdict",
                )
            )
    return out


def _unsteady_evidence(row: pd.Series) -> str:
    """What the cell saw that a steady closed loop would not: starved users, a long gap."""
    parts = []
    in_loop, users = row.get("users_in_loop"), row.get("users")
    if in_loop is not None and pd.notna(in_loop) and in_loop < users:
        parts.append(f"only {int(in_loop)} of {int(users)} users had an answer before the window")
    starved = row.get("starved")
    if starved is not None and pd.notna(starved) and starved > 0:
        parts.append(f"{int(starved)} requests waited through the whole window")
    evidence = _text(row.get("stall_evidence"), "")
    if evidence:
        parts.append(f"longest gap: {evidence}")
    return "".join(f"; {p}" for p in parts)


def _counts(summary: pd.DataFrame) -> list[Caveat]:
    out: list[Caveat] = []
    flags = outcomes(summary)
    live = summary[flags != FAILED]
    n = sample_counts(live)
    has_censored = "censored" in live and live["censored"].notna().any()
    for (_, row), count in zip(live.iterrows(), n, strict=True):
        cell = str(row["cell_id"])
        censored = row.get("censored")
        if censored is not None and pd.notna(censored) and censored > 0:
            oldest = row.get("censored_min_ms")
            age = f" (smallest age {oldest:,.0f} ms)" if pd.notna(oldest) else ""
            out.append(
                Caveat(
                    "censored requests",
                    cell,
                    f"{int(censored)} request(s) still in flight when the cell ended{age}: "
                    "their latency is a lower bound, so any percentile at or above it is "
                    "printed with ≥",
                )
            )
        # The sample rule emptied the p99 (contract.PERCENTILE_RULE): say what is left.
        if not math.isnan(count) and pd.isna(row.get("p99_ms")):
            q = highest(row)
            shown = f"highest printed: p{q}" if q else "no percentile printed"
            out.append(
                Caveat(
                    "n too small",
                    cell,
                    f"n={int(count):,} latency samples (ok + censored); p99 needs "
                    f"{contract.min_samples(99):,}: {shown}",
                )
            )
        probe = row.get("probe_requests")
        if probe is not None and pd.notna(probe) and pd.isna(row.get("probe_p99_ms")):
            out.append(
                Caveat(
                    "n too small",
                    cell,
                    f"probe n={int(probe):,}; probe p99 needs {contract.min_samples(99):,}: "
                    "the probe rule uses the probe max",
                )
            )
        requests, failures = row.get("requests"), row.get("failures")
        if pd.notna(requests) and pd.notna(failures) and requests > 0:
            rate = float(failures) / float(requests)
            if rate > ERROR_RATE:
                split = ""
                if pd.notna(row.get("errors")) and pd.notna(row.get("timeouts")):
                    split = f" (errors {int(row['errors'])}, timeouts {int(row['timeouts'])})"
                out.append(Caveat("failed requests", cell, f"{rate:.1%} of requests failed{split}"))
        cut = row.get("cut_off")
        if not has_censored and cut is not None and pd.notna(cut) and cut > 0:
            out.append(
                Caveat(
                    "requests cut off",
                    cell,
                    f"{int(cut)} requests still in flight when the window closed, left out of "
                    "the percentiles (this run predates censoring)",
                )
            )
        parts = [row.get(c) for c in ("ok", "errors", "timeouts", "censored")]
        if pd.notna(requests) and all(p is not None and pd.notna(p) for p in parts):
            total = sum(int(p) for p in parts)  # type: ignore[arg-type]
            if total != int(requests):
                out.append(
                    Caveat(
                        "inconsistent counts",
                        cell,
                        f"ok + errors + timeouts + censored = {total:,} but requests = "
                        f"{int(requests):,}",
                    )
                )
    usable = live[column(live, "valid", True).astype(bool)]
    if "loadgen_cpu_pct" in usable:
        hot = usable[usable["loadgen_cpu_pct"] > contract.LOADGEN_MAX_PCT]
        for row in hot.itertuples():
            out.append(
                Caveat(
                    "saturated load generator",
                    str(row.cell_id),
                    f"Locust at {row.loadgen_cpu_pct:.0f}% of a core (> "
                    f"{contract.LOADGEN_MAX_PCT:.0f}%) in a cell marked valid: the throughput "
                    "may be Locust's limit",
                )
            )
    return out


def _spread(decided: Verdicts) -> list[Caveat]:
    agg = decided.counted
    out: list[Caveat] = []
    if agg.empty:
        return out
    for _, row in agg.iterrows():
        scenario = str(row["scenario"])
        where = f"{scenario} / {row['style']} / {row['users']} users"
        if row["repeats"] < 2:
            out.append(Caveat("one repeat", where, "one repeat: no interval, no verdict here"))
            continue
        metric = decided.metrics.get(scenario, "rps")
        noise = decided.noises[scenario].value if scenario in decided.noises else 0.0
        if pd.isna(row.get(metric)) or row[metric] == 0:
            continue
        spread = float(relative_spread(pd.DataFrame([row]), metric).iloc[0])
        if spread > SPREAD_WARN_FACTOR * noise:
            out.append(
                Caveat(
                    "high run-to-run spread",
                    where,
                    f"{metric_name(metric)} varies {spread:.0%} between repeats, more than "
                    f"{SPREAD_WARN_FACTOR:g}x the scenario's noise ({noise:.0%})",
                )
            )
    return out


def _drift(summary: pd.DataFrame) -> list[Caveat]:
    out: list[Caveat] = []
    for _, row in drifting_cells(summary).iterrows():
        configured = float(row["upstream_latency_ms"])
        drift = float(row["upstream_drift_ms"])
        out.append(
            Caveat(
                "upstream drift",
                str(row["cell_id"]),
                f"the upstream served {configured + drift:,.1f} ms against {configured:g} ms "
                f"configured ({drift:+.1f} ms, {abs(drift) / configured:.0%} > "
                f"{UPSTREAM_DRIFT_MAX:.0%})",
            )
        )
    return out


def _calibration(manifest: Mapping[str, Any], decided: Verdicts) -> list[Caveat]:
    cal = calibration(manifest)
    if cal is None:
        failed = [e for e in manifest.get("calibration") or [] if isinstance(e, dict)]
        if failed:
            return [
                Caveat("calibration", str(e.get("label", "?")), f"calibration failed: {e['error']}")
                for e in failed
                if e.get("error")
            ]
        return [
            Caveat(
                "calibration",
                "manifest.json",
                "no calibration recorded: how quiet the machine was is unknown, and another run "
                "cannot be compared in absolute figures",
            )
        ]
    out = [
        Caveat("calibration", str(e.get("label", "?")), f"calibration failed: {e['error']}")
        for e in cal.entries
        if e.get("error")
    ]
    noises = {s: n.value for s, n in decided.noises.items()}
    if not noises:
        return out
    scenario, smallest = min(noises.items(), key=lambda kv: kv[1])
    for key in cal.keys:
        drift = cal.drift(key)
        if drift > smallest:
            out.append(
                Caveat(
                    "calibration drift",
                    key,
                    f"drifted {drift:.1%} during the run, more than the smallest noise "
                    f"threshold (`{scenario}` {smallest:.0%}): the machine's speed changed as "
                    "much as the differences the verdicts resolve",
                )
            )
    return out
