"""The run report: verdicts, the registered sections (analysis.sections.registry), warnings,
settings and charts, as report.md and report.html."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

import contract
from analysis.document import (
    Block,
    Bullets,
    Heading,
    Image,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from analysis.fmt import rate
from analysis.judge.caveats import Caveat, caveats
from analysis.judge.rules import CONFIRMS, CONTRADICTS, PARTLY
from analysis.judge.samples import rule_text, tail, too_small
from analysis.judge.transform import at_users, scenarios
from analysis.judge.verdict import (
    Verdict,
    Verdicts,
    decide_verdicts,
    fmt_ratio,
    leader_label,
    styles_at,
)
from analysis.judge.why import Limits
from analysis.load.run import Run, load_manifest, load_run
from analysis.plot.charts import CHARTS_DIR
from analysis.report.render import NOTHING_DRAWN, Rendered, render_all
from analysis.report.trust import (
    completeness_blocks,
    latency_blocks,
    observer_blocks,
    opening_blocks,
    quiet_blocks,
    upstream_blocks,
    warning_blocks,
)
from analysis.report.why_blocks import mechanism_blocks, why_column
from analysis.sections.protocol import Place, Shown, files_of
from analysis.sections.registry import at, show, standalone
from analysis.vocabulary import label, ordered

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
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
    "One colour per handler style in every chart: sync blue, sync + httpx2 sky blue, async "
    "green, async + httpx2 light green, async + aiohttp orange, blocking red.",
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
    "Overview: for each scenario, the leader's advantage in its verdict metric (throughput, or "
    "CPU per request where marked) and the runner-up's tail latency over the leader's; above x1 "
    "favours the leader, the grey band is that scenario's noise threshold.",
    "CPU per request: server CPU ms per completed request by style at each verdict's load; "
    "lower is cheaper. Where the load generator saturates first (`hello`), it decides.",
    "X markers in throughput charts are excluded cells (failed, stalled, invalid or not "
    "steady): not in any median.",
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
    # What the run lacks (load.completeness), one sentence each; empty when complete.
    incomplete: tuple[str, ...] = ()
    # Data files the sections wrote beside the report (the probe's routes.csv).
    files: tuple[Path, ...] = ()


# The committed reference run: a new run's machine speed is compared with its calibration.
DEFAULT_REFERENCE = Path("results/reference")


def reference_manifest(
    reference: Path | str | None, run_path: Path
) -> tuple[str, dict[str, Any]] | None:
    """(name, manifest) of the reference run, unless there is none or it is the run itself."""
    if reference is None:
        return None
    path = Path(reference)
    if not (path / "manifest.json").is_file() or path.resolve() == run_path.resolve():
        return None
    return str(path), load_manifest(path / "manifest.json")


def write_report(
    run_dir: Path | str,
    noise: float | None = None,
    out_dir: Path | str | None = None,
    reference: Path | str | None = DEFAULT_REFERENCE,
    *,
    draw: bool = True,
) -> ReportFiles:
    """Load a run, decide its verdicts, compute its sections, render charts and write report.md
    and report.html.

    They go into `out_dir` (default: the run folder), charts under `out_dir/charts/`; with
    `draw=False` no chart is drawn (the text only, as fast as it gets). The machine's
    calibration is compared with the `reference` run's, when that is another run.
    """
    run = load_run(run_dir)
    ref = reference_manifest(reference, run.path)
    out = Path(out_dir) if out_dir is not None else run.path
    out.mkdir(parents=True, exist_ok=True)
    decided = decide_verdicts(run.summary, noise)
    warnings = caveats(run.summary, decided, run.missing_columns, run.derived, run.manifest)
    shown = show(run, decided)
    rendered = render_all(run, decided, shown, out / CHARTS_DIR) if draw else NOTHING_DRAWN
    blocks = build_report(run, decided, warnings, rendered, out, ref, shown)
    written = [path for s in shown for path in files_of(s, out)]
    md = out / REPORT_MD
    page = out / REPORT_HTML
    md.write_text(to_markdown(blocks, out), encoding="utf-8")
    page.write_text(to_html(blocks, f"def or async def: {run.name}"), encoding="utf-8")
    return ReportFiles(
        md,
        page,
        [c.path for c in rendered.all()],
        tuple(f"run {run.name} is incomplete: {p}" for p in run.completeness.problems()),
        tuple(written),
    )


def section_blocks(shown: Sequence[Shown], rendered: Rendered, place: Place) -> list[Block]:
    """The blocks of the shown sections of one place, in registry order, with their charts."""
    return [b for s in at(shown, place) for b in s.blocks(rendered.of(s.key))]


def build_report(
    run: Run,
    decided: Verdicts,
    warnings: list[Caveat],
    rendered: Rendered = NOTHING_DRAWN,
    out_dir: Path | None = None,
    reference: tuple[str, dict[str, Any]] | None = None,
    shown: Sequence[Shown] | None = None,
) -> list[Block]:
    """The report's blocks, in reading order; `shown`: the run's sections with their tables
    (analysis.sections.registry.show; computed here when not given)."""
    shown = show(run, decided) if shown is None else shown
    verdicts = decided.verdicts
    limits = Limits.from_manifest(run.manifest)
    where = (
        ""
        if out_dir is None or out_dir.resolve() == run.path.resolve()
        else (f" Written from `{run.path}`.")
    )
    head: list[Block] = [
        Heading(f"def or async def? Run `{run.name}`", 1),
        # A run that lacks planned cells says so before anything else.
        *completeness_blocks(run.completeness, f"run `{run.name}`"),
        *([Paragraph(where.strip())] if where else []),
        # Open-loop capacity leads when the run has rate cells (nothing otherwise).
        *section_blocks(shown, rendered, Place.LEAD),
    ]
    if run.summary.empty or standalone(shown):
        # Rate cells only, or a section that is the run's whole story (a probe run): no
        # closed-loop verdict has anything to say.
        reading = [line for s in shown for line in s.section.reading]
        return [
            *head,
            Heading("Machine and versions"),
            *manifest_blocks(run.manifest),
            Heading("Settings that shaped the result"),
            *manifest_settings_blocks(run.manifest),
            *([Heading("How to read these charts"), Bullets(reading)] if reading else []),
            *warning_blocks(warnings, rendered.notes),
        ]
    reading = [line for s in shown for line in s.section.reading]
    blocks: list[Block] = [
        *head,
        *opening_blocks(run.summary, decided, warnings, run.missing_columns),
        Heading("The question"),
        Paragraph(QUESTION),
        Heading("Verdicts"),
        *server_scope(run),
        Paragraph(verdict_rule(decided)),
        Paragraph(rule_text()),
        verdict_table(
            verdicts,
            why_column(decided.counted, verdicts, limits, decided.stalls),
            decided.metric_notes,
        ),
        Heading("Throughput per style at the compared load"),
        Paragraph(
            "Medians over the counted repeats, with the highest tail percentile n supports "
            "(p99 unless named); **bold** = the winner(s) (none when there is no clear winner). "
            "Where a scenario is judged by CPU per request, it is shown too."
        ),
        style_table(decided),
        *latency_blocks(decided),
        *section_blocks(shown, rendered, Place.FINDINGS),
        *observer_blocks(run.summary),
        *upstream_blocks(run.summary),
        *quiet_blocks(run.manifest, decided, reference),
        *mechanism_blocks(decided.counted, verdicts),
        *section_blocks(shown, rendered, Place.MECHANISM),
        Heading("Machine and versions"),
        *manifest_blocks(run.manifest),
        Heading("Settings that shaped the result"),
        settings_table(run),
        *manifest_settings_blocks(run.manifest),
        Heading("How to read these charts"),
        Bullets([*HOW_TO_READ, *reading]),
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
    blocks += warning_blocks(warnings, rendered.notes)
    return blocks


def verdict_table(
    verdicts: list[Verdict],
    why: dict[str, str] | None = None,
    metric_notes: dict[str, str] | None = None,
) -> Table:
    """Scenario, load, metric, winner, ratio and interval, noise, tail, verdict, why, rules."""
    why = why or {}
    metric_notes = metric_notes or {}
    rows = []
    for v in verdicts:
        rules = (
            "\n".join(f"{_outcome(c.outcome)}: {c.rule} ({c.detail})" for c in v.checks)
            or "no docs rule mapped to this scenario"
        )
        judged = _metric_label(v)
        if v.scenario in metric_notes:
            judged += f" ({metric_notes[v.scenario]})"
        rows.append(
            [
                f"`{v.scenario}`",
                "n/a" if v.users is None else str(v.users),
                judged,
                leader_label(v),
                fmt_ratio(v.ratio),
                v.noise,
                "n/a" if v.users is None else f"{v.tail}: {fmt_ratio(v.tail_ratio)}",
                v.text,
                why.get(v.scenario, "not recorded"),
                rules,
            ]
        )
    header = [
        "scenario",
        "users",
        "judged by",
        "winner",
        "lead: median ratio (repeat interval)",
        "noise used",
        "tail ratio (runner-up / leader)",
        "verdict",
        "why (mechanism seen in the server)",
        "FastAPI docs rule: what the data says",
    ]
    return Table(header, rows)


def _metric_label(v: Verdict) -> str:
    if v.metric == "rps":
        return "throughput"
    return (
        f"`{v.metric}` (lower is better; cells invalid only because the load generator "
        "saturated are counted)"
    )


def style_table(decided: Verdicts) -> Table:
    """One row per scenario, one column per style: throughput and tail at the verdict's load."""
    agg, verdicts = decided.counted, decided.verdicts
    stalled = {(st.scenario, st.style, st.users): st for st in decided.stalls}
    at_verdicts = {(v.scenario, v.users) for v in verdicts}
    styles = ordered(
        [s for v in verdicts for s in styles_at(agg, v)]
        + [st for (sc, st, u) in stalled if (sc, u) in at_verdicts]
    )
    rows = []
    for v in verdicts:
        if v.users is None:
            continue
        at = at_users(agg, v.scenario, v.users)
        cells = []
        for s in styles:
            stall = stalled.get((v.scenario, s, v.users))
            if s not in at.index:
                cells.append(
                    f"stalled ({stall.stalled} of {stall.repeats} repeats)" if stall else "-"
                )
                continue
            row = at.loc[s]
            t = tail(row)
            text = f"{rate(row['rps'])} ({t.text() if t else too_small(row.get('n'))})"
            if v.metric != "rps" and pd.notna(row.get(v.metric)):
                text += f"; {row[v.metric]:.3g} ms CPU/req"
            bound = int(row.get("load_side_invalid", 0) or 0)
            if bound:
                text += f"; load generator saturated in {bound} of {int(row['repeats'])} repeats"
            if stall:
                text += f"; stalled in {stall.stalled} of {stall.repeats} repeats"
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
    """Per scenario: users, repeats, window, threadpool tokens, upstream latency, ASGI server."""
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
                _names(part["server"]),
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
        "ASGI server",
    ]
    return Table(header, rows)


def server_scope(run: Run) -> list[Block]:
    """For a run whose cells span several ASGI servers: whose cells the verdicts read."""
    if len(run.servers) < 2:
        return []
    others = ", ".join(f"`{s}`" for s in run.servers if s != run.server)
    return [
        Paragraph(
            f"This run served its cells under {len(run.servers)} ASGI servers. The verdicts, "
            'the tables and charts of this report and every section but "Which ASGI server" '
            f"read the `{run.server}` cells only ({len(run.summary)} of "
            f"{len(run.every_server)} closed-loop cells), so no style's repeats mix servers; "
            f'{others} are compared with it in "Which ASGI server".'
        )
    ]


def verdict_rule(decided: Verdicts) -> str:
    """How the verdicts were decided, with each scenario's noise."""
    stated = ", ".join(f"`{s}` {n.value:.0%}" for s, n in decided.noises.items())
    other = sorted({m for m in decided.metrics.values() if m != "rps"})
    by_cost = (
        f" Scenarios the contract judges by another metric ({', '.join(f'`{m}`' for m in other)}"
        ", lower is better) count cells invalid only because the load generator saturated: "
        "the server's cost per request is still its own."
        if other
        else ""
    )
    return (
        "Each scenario is judged at the highest user count where at least two styles have "
        "counted cells: status ok, valid, steady (users / (throughput x mean latency) within "
        f"±{contract.LITTLE_TOLERANCE:.0%} of 1), not stalled, default arm." + by_cost + " The "
        "leader is the best median; a lead is clear only when the ratio's repeat interval "
        "(lo = min(a) / max(b), hi = max(a) / min(b)) lies above 1 **and** the median ratio is "
        "at least 1 + the scenario's noise. The noise comes from the run itself: max("
        f"{contract.MIN_NOISE:.0%}, median over the scenario's cells of the relative repeat "
        f"spread (max - min) / median of the verdict metric) ({stated}). Styles within the "
        "noise of the leader share the win; when every style is, the verdict is **no clear "
        "winner**. With fewer than 2 repeats there is no interval and no verdict. A stalled "
        "style is named with its evidence, never turned into a ratio."
    )


def _outcome(outcome: str) -> str:
    return f"**{outcome}**" if outcome in (CONFIRMS, CONTRADICTS, PARTLY) else outcome


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


def _names(values: pd.Series) -> str:
    # summary `server`: empty in runs from before the column (and for a `--target`).
    present = sorted({str(x).strip() for x in values if str(x).strip() not in ("", "nan")})
    return ", ".join(f"`{x}`" for x in present) if present else "not recorded"
