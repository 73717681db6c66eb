"""The report's parts about trust: the opening, latency percentiles, the observer effect,
upstream drift, how quiet the machine was, and every warning grouped by kind."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

import contract
from analysis.document import Block, Bullets, Heading, Paragraph, Table
from analysis.fmt import ms, rate
from analysis.judge.caveats import Caveat, grouped
from analysis.judge.cells import (
    FAILED,
    INVALID,
    NOT_STEADY,
    STALLED,
    arms,
    outcomes,
)
from analysis.judge.noise import spread_table
from analysis.judge.observer import observer_arms, observer_effect
from analysis.judge.quiet import (
    CALIBRATION_NAMES,
    UPSTREAM_DRIFT_MAX,
    Calibration,
    calibration,
    comparability,
    upstream_drift,
)
from analysis.judge.samples import fmt_max, fmt_pct, rule_text
from analysis.judge.transform import at_users, scenarios
from analysis.judge.verdict import Verdicts, fmt_ratio
from analysis.load.completeness import Completeness
from analysis.vocabulary import DEFAULT_ARM, label, ordered


def completeness_blocks(completeness: Completeness, run: str) -> list[Block]:
    """The banner of an incomplete run (`run`: how to name it), listing what it lacks."""
    if completeness.complete:
        return []
    return [
        Paragraph(f"**Incomplete {run}: every figure below covers only the cells it holds.**"),
        Bullets(completeness.problems()),
    ]


def _share(count: int, total: int) -> str:
    return f"{count:,} ({count / total:.1%})" if total else "0"


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1%}"


def opening_blocks(
    summary: pd.DataFrame,
    decided: Verdicts,
    warnings: Sequence[Caveat],
    missing_columns: Sequence[str] = (),
) -> list[Block]:
    """The report's opening: how many cells are flagged, warnings per kind, repeat spread."""
    flags = outcomes(summary)
    total = len(summary)
    other = int((arms(summary) != DEFAULT_ARM).sum())
    unchecked = {"steady", "little_ratio"} <= set(missing_columns)
    rows = []
    for flag, what in (
        (INVALID, "the load side, not the server, set the numbers"),
        (
            NOT_STEADY,
            f"Little's law off by more than ±{contract.LITTLE_TOLERANCE:.0%}: not a steady state",
        ),
        (STALLED, "no completion for the stall threshold with requests in flight"),
        (FAILED, "the cell did not run to the end"),
    ):
        count = int((flags == flag).sum())
        shown = (
            "not checked (`steady`, `little_ratio` absent)"
            if (flag == NOT_STEADY and unchecked)
            else _share(count, total)
        )
        rows.append([flag, shown, what])
    rows.append(["usable", _share(int((flags == "ok").sum()), total), "counted in the medians"])
    blocks: list[Block] = [
        Heading("At a glance"),
        Paragraph(
            f"{total:,} cells"
            + (f" ({other:,} of them in named arms: one server setting changed)" if other else "")
            + ". A cell carries its most serious flag only (failed > stalled > invalid > "
            "not steady). Flagged cells never decide a verdict (except, where a scenario is "
            "judged by CPU per request, cells invalid only because the load generator "
            "saturated); all are listed under Warnings at the end."
        ),
        Table(["cells", "count (share)", "meaning"], rows),
    ]
    groups = grouped(warnings)
    if groups:
        blocks.append(
            Paragraph(
                "Warnings per kind (each listed in full at the end): "
                + ", ".join(f"{kind} {len(items):,}" for kind, items in groups.items())
                + "."
            )
        )
    spread_rows = []
    for s in scenarios(summary):
        t = spread_table(decided.agg, s)
        noise = decided.noises.get(s)
        spread_rows.append(
            [
                f"`{s}`",
                str(t["cells"]),
                _pct(float(t["rps_median"])),
                _pct(float(t["rps_p90"])),
                str(t["p99_cells"]),
                _pct(float(t["p99_median"])),
                _pct(float(t["p99_p90"])),
                noise.text() if noise else "-",
            ]
        )
    blocks += [
        Paragraph(
            "Repeat spread per scenario: (max - min) / median over the repeats of each usable "
            "cell (scenario x style x users with >= 2 repeats); the p99 spread only over cells "
            "whose every repeat has the samples a p99 needs. The verdict noise is measured the "
            "same way on the verdict metric."
        ),
        Table(
            [
                "scenario",
                "cells",
                "rps spread median",
                "rps spread p90",
                "cells (p99)",
                "p99 spread median",
                "p99 spread p90",
                "verdict noise",
            ],
            spread_rows,
        ),
    ]
    return blocks


def latency_blocks(decided: Verdicts) -> list[Block]:
    """Every style's percentiles at each verdict's load, under the sample-count rule."""
    rows = []
    for v in decided.verdicts:
        if v.users is None:
            continue
        at = at_users(decided.counted, v.scenario, v.users)
        for style in ordered(at.index):
            r = at.loc[style]
            n, cmin = r.get("n"), r.get("censored_min_ms")
            rows.append(
                [
                    f"`{v.scenario}`",
                    str(v.users),
                    label(style),
                    "-" if pd.isna(n) else f"{int(n):,}",
                    *(fmt_pct(r.get(f"p{q}_ms"), n, cmin) for q in (50, 90, 95, 99)),
                    fmt_max(r.get("max_ms"), cmin),
                ]
            )
    if not rows:
        return []
    return [
        Heading("Latency at the compared load"),
        Paragraph(
            "Medians over the counted repeats. "
            + rule_text()
            + " Failed requests' latency is not in these percentiles."
        ),
        Table(["scenario", "users", "style", "n", "p50", "p90", "p95", "p99", "max"], rows),
    ]


def observer_blocks(summary: pd.DataFrame) -> list[Block]:
    """The observer-effect section: observe on vs off for the same cells, as ratios and %."""
    table = observer_effect(summary)
    head: list[Block] = [Heading("Observer effect")]
    if table.empty:
        why = (
            "no cell of an observer-effect arm matched a usable default-arm cell"
            if "arm" in summary and observer_arms(summary)
            else "this run has no observer-effect arm (no row of a named `arm` with `observe` "
            "False)"
        )
        return [*head, Paragraph(f"Not measured: {why}.")]
    rows = []
    for r in table.itertuples():
        rps = (r.rps_ratio, r.rps_ratio_lo, r.rps_ratio_hi)
        tail = (r.tail_ratio, r.tail_ratio_lo, r.tail_ratio_hi)
        one = min(r.repeats_on, r.repeats_off) < 2
        rows.append(
            [
                f"`{r.arm}`",
                f"`{r.scenario}`",
                label(str(r.style)),
                str(r.users),
                f"{rate(r.rps_on)} / {rate(r.rps_off)}",
                fmt_ratio(rps) + (" (one repeat: no interval)" if one else ""),
                f"{r.rps_overhead_pct:+.1f}%",
                f"{r.tail}: {fmt_ratio(tail)}",
                "-" if math.isnan(r.tail_overhead_pct) else f"{r.tail_overhead_pct:+.1f}%",
            ]
        )
    rps_cost = table["rps_overhead_pct"]
    tail_cost = table["tail_overhead_pct"].dropna()
    summary_text = (
        f"Over {len(table)} matched cell(s), observing cost a median of "
        f"{rps_cost.median():+.1f}% of the throughput (from {rps_cost.min():+.1f}% to "
        f"{rps_cost.max():+.1f}%)"
    )
    if not tail_cost.empty:
        summary_text += (
            f" and changed the tail latency by a median of {tail_cost.median():+.1f}% "
            f"(from {tail_cost.min():+.1f}% to {tail_cost.max():+.1f}%)"
        )
    return [
        *head,
        Paragraph(
            "The same scenario x style x users with the server's /metrics monitor and "
            "Server-Timing on (the default arm) and off (the arm named). Ratios are on / off "
            "medians with the repeat interval; throughput overhead = (1 - ratio) x 100, tail "
            "overhead = (ratio - 1) x 100: positive means observing costs that much. These "
            "rows are never in the style aggregates or verdicts."
        ),
        Paragraph(summary_text + "."),
        Table(
            [
                "arm",
                "scenario",
                "style",
                "users",
                "throughput on / off",
                "throughput ratio on / off",
                "throughput overhead",
                "tail ratio on / off",
                "tail overhead",
            ],
            rows,
        ),
    ]


def upstream_blocks(summary: pd.DataFrame) -> list[Block]:
    """The mock upstream's drift per proxy scenario: what it served against its configuration."""
    head: list[Block] = [Heading("Did the upstream serve what it was configured to?")]
    table = upstream_drift(summary)
    if table.empty:
        has_proxy = (
            "upstream_latency_ms" in summary and summary["upstream_latency_ms"].notna().any()
        )
        why = (
            "not recorded: this run predates `upstream_served_ms` / `upstream_drift_ms`"
            if has_proxy
            else "no proxy scenario in this run"
        )
        return [*head, Paragraph(why[0].upper() + why[1:] + ".")]
    rows = []
    for r in table.itertuples():
        rel = "-" if math.isnan(r.max_rel) else f"{r.max_rel:.1%}"
        rows.append(
            [
                f"`{r.scenario}`",
                ms(r.configured_ms),
                str(r.cells),
                f"{r.median_ms:+.1f} ms",
                f"{r.max_ms:+.1f} ms ({rel})",
                f"**warning: more than {UPSTREAM_DRIFT_MAX:.0%} off**" if r.warn else "ok",
            ]
        )
    return [
        *head,
        Paragraph(
            "Drift = mean latency the mock upstream served during the cell - its configured "
            f"latency (`upstream_latency_ms`), over every cell that ran. Beyond "
            f"{UPSTREAM_DRIFT_MAX:.0%} of the configured latency the proxy scenarios measured "
            "a slower (or faster) upstream than their settings say."
        ),
        Table(["scenario", "configured", "cells", "median drift", "max drift", "status"], rows),
    ]


def quiet_blocks(
    manifest: Mapping[str, Any],
    decided: Verdicts,
    reference: tuple[str, Mapping[str, Any]] | None = None,
) -> list[Block]:
    """How quiet the machine was: calibration over the run, its drift, and against a reference.

    `reference` is (name, manifest) of the committed reference run, when there is one.
    """
    head: list[Block] = [Heading("How quiet was the machine")]
    cal = calibration(manifest)
    if cal is None:
        return [
            *head,
            Paragraph(
                "Not recorded: manifest.json has no `calibration` (this run predates it). How "
                "much the machine's speed moved during the run is unknown."
            ),
        ]
    keys = cal.keys
    t0 = next((e.get("ts") for e in cal.entries if isinstance(e.get("ts"), int | float)), None)
    rows = []
    for e in cal.entries:
        ts = e.get("ts")
        when = f"+{ts - t0:,.0f} s" if isinstance(ts, int | float) and t0 is not None else "-"
        failed = f" (failed: {e['error']})" if e.get("error") else ""
        rows.append(
            [
                str(e.get("label", "")) + failed,
                when,
                *(f"{e[k]:,.0f}" if isinstance(e.get(k), int | float) else "-" for k in keys),
            ]
        )
    rows.append(["max drift from the first", "", *(f"{cal.drift(k):.1%}" for k in keys)])
    noises = {s: n.value for s, n in decided.noises.items()}
    key, drift = cal.max_drift()
    if noises:
        scenario, smallest = min(noises.items(), key=lambda kv: kv[1])
        verdict = (
            f"**Warning: {CALIBRATION_NAMES.get(key, key)} drifted {drift:.1%}, more than the "
            f"smallest noise threshold (`{scenario}` {smallest:.0%})**: the machine's speed "
            "changed as much as the differences the verdicts resolve."
            if drift > smallest
            else f"The largest drift, {drift:.1%} ({CALIBRATION_NAMES.get(key, key)}), stays "
            f"within the smallest noise threshold (`{scenario}` {smallest:.0%})."
        )
    else:
        verdict = f"The largest drift is {drift:.1%} ({CALIBRATION_NAMES.get(key, key)})."
    return [
        *head,
        Paragraph(
            "The same two micro-benchmarks before the run and after each pass: a pure-Python "
            "loop on the server core, and a bare ASGI `/hello` under uvicorn on the server core "
            "driven from the load core. If they move, the machine's speed moved under the "
            "measurements."
        ),
        Table(["when", "time", *(CALIBRATION_NAMES.get(k, k) for k in keys)], rows),
        Paragraph(verdict),
        *reference_blocks(cal, reference),
    ]


def reference_blocks(
    cal: Calibration, reference: tuple[str, Mapping[str, Any]] | None
) -> list[Block]:
    """One sentence: was this machine as fast as the reference run's, so figures compare?"""
    if reference is None:
        return []
    name, ref_manifest = reference
    sentence = comparability(calibration(ref_manifest), cal, name, "this run")
    warn = "**Warning:** " if sentence.startswith("not comparable") else ""
    return [Paragraph(f"Against the reference run `{name}`: {warn}{sentence}.")]


def warning_blocks(warnings: Sequence[Caveat], notes: Sequence[str]) -> list[Block]:
    """Every warning, grouped by kind with its count; nothing cut off."""
    blocks: list[Block] = [Heading("Warnings")]
    if not warnings and not notes:
        return [*blocks, Paragraph("None: every cell usable, the load generator below saturation.")]
    groups = grouped(warnings)
    if notes:
        groups["chart skipped"] = [Caveat("chart skipped", "", n) for n in notes]
    blocks.append(
        Table(
            ["kind", "count"],
            [[kind, f"{len(items):,}"] for kind, items in groups.items()],
        )
    )
    for kind, items in groups.items():
        blocks.append(Heading(f"{kind} ({len(items):,})", 3))
        blocks.append(Bullets([f"`{w.cell}`: {w.detail}" if w.cell else w.detail for w in items]))
    return blocks
