"""The run report: verdicts, warnings, settings and charts, as report.md and report.html."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.caveats import Caveat, caveats
from analysis.charts import CHARTS_DIR, Rendered, render_all
from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table, to_html, to_markdown
from analysis.fmt import ms, rate
from analysis.load import Run, load_run
from analysis.report_why import mechanism_blocks, sweep_blocks, why_column
from analysis.rules import CONFIRMS, CONTRADICTS
from analysis.styles import label, ordered
from analysis.transform import aggregate, at_users, scenarios
from analysis.verdict import (
    Verdict,
    compute_verdicts,
    fmt_ratio,
    leader_label,
    noise_threshold,
    styles_at,
)
from analysis.why import Limits

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
SHOWN_CAVEATS = 40
# Manifest sections shown first, in this order; any other key follows.
MANIFEST_SECTIONS = ("machine", "versions", "pinning")
# What the run was: shown first, in the manifest's own order.
RUN_KEYS = ("run_id", "start", "end", "started_at", "finished_at", "git", "git_commit", "target")
# What shaped the numbers: shown under "Settings".
SETTINGS_SECTIONS = ("matrix", "server_settings", "settings")
# Never print these, whatever a manifest holds.
SECRET_WORDS = ("api_key", "secret", "password")
LONG_LIST = 12

QUESTION = (
    "Should a FastAPI endpoint be `def` or `async def`? Every scenario runs the same endpoint in "
    "each handler style: **sync** (`def` + a sync library, run in anyio's threadpool), **async** "
    "(`async def` + an async library: `httpx.AsyncClient`, or aiohttp where marked, and async "
    "SQLAlchemy on aiosqlite) and **blocking** (`async def` calling the sync library directly: "
    "the anti-pattern the docs warn about). Load is closed loop: each Locust user sends its next "
    "request as soon as the previous one returns."
)

HOW_TO_READ = (
    "One colour per handler style in every chart: sync blue, async green, async + aiohttp "
    "orange, blocking red.",
    "Throughput charts: the line is the median over valid repeats, the band the min-max spread. "
    "The dotted grey line is the ideal users / upstream latency (Little's law): a style on it "
    "keeps every user busy. The dash-dot vertical line marks the threadpool tokens: `def` "
    "cannot have more requests in flight, so it levels off near tokens / latency (the dotted "
    "blue line).",
    "Latency charts use a log scale: dashed p50, solid p99. A p99 that climbs steeply with "
    "users while throughput stays flat means requests queue.",
    "Distribution charts show every successful request at the highest comparable load: a curve "
    "further right is slower; a long flat tail at the top is the p99 story.",
    "`chat_stream`: time to first token is what a chat user waits before anything appears; "
    "inter-token latency is the stutter after that.",
    "`mixed`: a light `/hello` probe user runs beside the load. A style whose probe latency "
    "rises with the load makes every request wait for the slow ones.",
    "Overview: for each scenario, the leader's throughput over the runner-up's and the "
    "runner-up's p99 over the leader's; above x1 favours the leader, the grey band is noise.",
    "X markers in throughput charts are excluded cells (invalid or failed): not in any median.",
    "Event-loop lag: how late the server's loop woke a 10 ms timer (solid max, dashed p99). "
    "Anything that holds the loop (a blocking call, CPU work in `async def`) delays every "
    "request on the worker by that much.",
    "Threadpool timeline: anyio's tokens in use and the tasks waiting for one, for `def` at "
    "the highest `chat` load. Flat at the limit with a queue behind it: `def` is out of threads.",
    "Overhead: time in the app minus time waiting on the upstream or DB, from the "
    "`Server-Timing` header: the cost of the handler style itself, waiting for a thread or for "
    "the loop included.",
    "Server CPU: % of one core; one worker cannot run Python on more than one core (the black "
    "line), so a style that reaches it is CPU-bound.",
)


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written."""

    markdown: Path
    html: Path
    charts: list[Path]


def write_report(run_dir: Path | str, noise: float | None = None) -> ReportFiles:
    """Load a run, compute verdicts, render charts and write report.md and report.html."""
    run = load_run(run_dir)
    agg = aggregate(run.summary)
    names = scenarios(run.summary)
    verdicts = compute_verdicts(agg, names, noise)
    thresholds = {s: noise_threshold(s, noise) for s in names}
    warnings = caveats(run.summary, agg, thresholds, run.missing_columns)
    rendered = render_all(run, agg, verdicts, run.path / CHARTS_DIR)
    blocks = build_report(run, agg, verdicts, warnings, rendered)
    md = run.path / REPORT_MD
    page = run.path / REPORT_HTML
    md.write_text(to_markdown(blocks, run.path), encoding="utf-8")
    page.write_text(to_html(blocks, f"def or async def: {run.name}"), encoding="utf-8")
    return ReportFiles(md, page, [c.path for c in (*rendered.charts, *rendered.sweep)])


def build_report(
    run: Run,
    agg: pd.DataFrame,
    verdicts: list[Verdict],
    warnings: list[Caveat],
    rendered: Rendered,
) -> list[Block]:
    """The report's blocks, in reading order."""
    blocks: list[Block] = [
        Heading(f"def or async def? Run `{run.name}`", 1),
        Heading("The question"),
        Paragraph(QUESTION),
        Heading("Verdicts"),
        Paragraph(_verdict_rule(verdicts)),
        verdict_table(verdicts, why_column(agg, verdicts, Limits.from_manifest(run.manifest))),
        Heading("Throughput per style at the compared load"),
        Paragraph(
            "Median requests/s over valid repeats, with p99 latency; **bold** = the winner(s) "
            "(none when there is no clear winner)."
        ),
        style_table(agg, verdicts),
        *mechanism_blocks(agg, verdicts),
        *sweep_blocks(run, rendered),
        Heading("Warnings"),
        *_warning_blocks(warnings, rendered.notes),
        Heading("Machine and versions"),
        *manifest_blocks(run.manifest),
        Heading("Settings that shaped the result"),
        settings_table(run),
        *manifest_settings_blocks(run.manifest),
        Heading("How to read these charts"),
        Bullets(HOW_TO_READ),
        Heading("Charts"),
    ]
    by_scenario: dict[str, list[Image]] = {}
    for chart in rendered.charts:
        by_scenario.setdefault(chart.scenario, []).append(
            Image(chart.path, chart.title, chart.caption)
        )
    blocks += by_scenario.pop("", [])
    for scenario, images in by_scenario.items():
        blocks += [Heading(f"`{scenario}`", 3), *images]
    return blocks


def verdict_table(verdicts: list[Verdict], why: dict[str, str] | None = None) -> Table:
    """Scenario, load, winner, ratios, the verdict, the mechanism and the docs rules it tests."""
    why = why or {}
    rows = []
    for v in verdicts:
        rules = (
            "\n".join(f"{_outcome(c.outcome)}: {c.rule} ({c.detail})" for c in v.checks)
            or "no docs rule mapped to this scenario"
        )
        rows.append(
            [
                f"`{v.scenario}`",
                "n/a" if v.users is None else str(v.users),
                leader_label(v),
                fmt_ratio(v.rps_ratio),
                fmt_ratio(v.p99_ratio),
                v.text,
                why.get(v.scenario, "not recorded"),
                rules,
            ]
        )
    header = [
        "scenario",
        "users",
        "winner",
        "throughput ratio (leader / runner-up)",
        "p99 ratio (runner-up / leader)",
        "verdict",
        "why (mechanism seen in the server)",
        "FastAPI docs rule: what the data says",
    ]
    return Table(header, rows)


def style_table(agg: pd.DataFrame, verdicts: list[Verdict]) -> Table:
    """One row per scenario, one column per style: throughput and p99 at the verdict's load."""
    styles = ordered(s for v in verdicts for s in styles_at(agg, v))
    rows = []
    for v in verdicts:
        if v.users is None:
            continue
        at = at_users(agg, v.scenario, v.users)
        cells = []
        for s in styles:
            if s not in at.index:
                cells.append("-")
                continue
            text = f"{rate(at.loc[s, 'rps'])} (p99 {ms(at.loc[s, 'p99_ms'])})"
            cells.append(f"**{text}**" if s in v.winners else text)
        rows.append([f"`{v.scenario}`", str(v.users), *cells])
    return Table(["scenario", "users", *[label(s) for s in styles]], rows)


def manifest_blocks(manifest: dict[str, Any]) -> list[Block]:
    """The manifest as tables: the run's identity first, then machine, versions, pinning."""
    run_rows = [[f"`{k}`", _manifest_value(k, v)] for k, v in manifest.items() if k in RUN_KEYS]
    run_rows += [
        [f"`{k}`", _manifest_value(k, v)]
        for k, v in manifest.items()
        if k not in RUN_KEYS and k not in SETTINGS_SECTIONS and not isinstance(v, dict)
    ]
    blocks: list[Block] = []
    if run_rows:
        blocks.append(Table(["run", "value"], run_rows))
    sections = [k for k in MANIFEST_SECTIONS if isinstance(manifest.get(k), dict)]
    sections += [
        k
        for k, v in manifest.items()
        if isinstance(v, dict) and k not in sections and k not in (*RUN_KEYS, *SETTINGS_SECTIONS)
    ]
    blocks += [_dict_table(key, manifest[key]) for key in sections if manifest[key]]
    if not blocks:
        blocks.append(Paragraph("manifest.json records nothing about the machine or versions."))
    return blocks


def manifest_settings_blocks(manifest: dict[str, Any]) -> list[Block]:
    """The matrix and the servers' effective settings recorded in the manifest."""
    return [
        _dict_table(key, manifest[key])
        for key in SETTINGS_SECTIONS
        if isinstance(manifest.get(key), dict) and manifest[key]
    ]


def _dict_table(title: str, section: dict[str, Any]) -> Table:
    rows = [[f"`{k}`", _manifest_value(k, v)] for k, v in _flatten(section)]
    return Table([title, "value"], rows)


def settings_table(run: Run) -> Table:
    """Per scenario: users, repeats, window, threadpool tokens and upstream latency."""
    s = run.summary
    rows = []
    for scenario in scenarios(s):
        part = s[s["scenario"] == scenario]
        rows.append(
            [
                f"`{scenario}`",
                ", ".join(str(u) for u in sorted(part["users"].unique())),
                str(int(part["repeat"].max())),
                _distinct(part["duration_s"], "s"),
                _distinct(part["warmup_s"], "s"),
                _distinct(part["threadpool_tokens"], ""),
                _distinct(part["upstream_latency_ms"], " ms", none="none (no upstream)"),
            ]
        )
    header = [
        "scenario",
        "users",
        "repeats",
        "window",
        "warm-up (excluded)",
        "threadpool tokens",
        "upstream latency",
    ]
    return Table(header, rows)


def _verdict_rule(verdicts: list[Verdict]) -> str:
    thresholds = sorted({(v.threshold, v.scenario) for v in verdicts})
    stated = ", ".join(f"`{s}` {t:.0%}" for t, s in thresholds)
    return (
        "Each scenario is judged at the highest user count where at least two styles have valid "
        "cells. The leader is the style with the highest median throughput; a style wins only "
        "when it beats another by more than the noise threshold **and** their min-max spreads "
        f"over repeats do not overlap (thresholds: {stated}; MEASURED.md saw 5-10% run-to-run "
        "variation on `/hello`, 1-5% on I/O). Styles within the noise of the leader share the "
        "win; when every style is, the verdict is **no clear winner**. Ratios show median "
        "(min-max). Invalid and failed cells are left out and listed under Warnings."
    )


def _warning_blocks(warnings: list[Caveat], notes: list[str]) -> list[Block]:
    if not warnings and not notes:
        return [Paragraph("None: every cell valid, load generator below saturation.")]
    items = [f"**{w.kind}** `{w.cell}`: {w.detail}" for w in warnings[:SHOWN_CAVEATS]]
    if len(warnings) > SHOWN_CAVEATS:
        items.append(f"... and {len(warnings) - SHOWN_CAVEATS} more warnings")
    items += [f"**chart skipped**: {n}" for n in notes]
    return [Bullets(items)]


def _outcome(outcome: str) -> str:
    return f"**{outcome}**" if outcome in (CONFIRMS, CONTRADICTS) else outcome


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, f"{key}.")
        else:
            out.append((key, v))
    return out


def _manifest_value(key: str, v: Any) -> str:
    if any(word in key.lower() for word in SECRET_WORDS):
        return "(not shown)" if v else "(empty)"
    if key in ("start", "end") and isinstance(v, int | float) and not isinstance(v, bool):
        # The orchestrator records epoch seconds; a reader wants a date.
        return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(v, dict):
        if key == "git" and "commit" in v:
            dirty = " (uncommitted changes)" if v.get("dirty") else ""
            return f"{v['commit']}{dirty}"
        return ", ".join(f"{k}={_value(x)}" for k, x in _flatten(v))
    if isinstance(v, list | tuple) and (len(v) > LONG_LIST or any(isinstance(x, dict) for x in v)):
        return f"{len(v)} {'entry' if len(v) == 1 else 'entries'}"
    return _value(v)


def _value(v: Any) -> str:
    if v is None:
        return "not recorded"
    if isinstance(v, list | tuple):
        return ", ".join(_value(x) for x in v)
    # First line only: `sys.version` carries the compiler on a second line.
    text = str(v).strip().splitlines()[0] if str(v).strip() else ""
    return text if len(text) <= 200 else text[:197] + "..."


def _distinct(values: pd.Series, unit: str, none: str = "not recorded") -> str:
    present = sorted({float(x) for x in values.dropna()})
    if not present:
        return none
    return ", ".join(f"{x:g}{unit}" for x in present)
