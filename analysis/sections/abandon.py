"""The section "Requests whose client left" (`make bench-abandon`): what a non-streamed request
costs once its client has gone, per handler style, by default and in the arm that cancels it.

Its scenarios' users give up before their answer (loadtests/matrices/abandon.toml: `chat_abandon`
through a slow upstream, `items_wait` behind a slow query) and send the next request at once, so
what the server does beyond the requests it answered ok is done for clients that have gone. Per
scenario x style x arm, over the repeats (the repeat statistic, analysis.judge.repeats): the
requests sent and answered ok (summary.csv), the upstream calls started (cell.json
`upstream_stats.requests`), the queries run (metrics.csv `lab_db_statements_total` at the cell's
last scrape) and what queued behind them: the peak upstream connections in use and waiting, the
peak requests waiting for a thread and the peak DB connections checked out (summary.csv, from the
window's scrapes of the server's `/metrics`).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

import contract
from analysis.document import Block, Bullets, Heading, Image, Paragraph, Table
from analysis.fmt import ms, plain
from analysis.judge.cells import arms, column
from analysis.judge.repeats import Repeats, numeric, over_repeats
from analysis.judge.stalls import fix_settings
from analysis.judge.transform import at_reference_tokens
from analysis.judge.verdict import Verdicts
from analysis.load.run import (
    CELL_FILE,
    METRICS_FILE,
    Run,
    RunFormatError,
    load_cell,
    load_metrics,
    metric_series,
)
from analysis.plot.charts import Chart, save_chart
from analysis.plot.styles import colour
from analysis.sections.protocol import Place
from analysis.vocabulary import DEFAULT_ARM, ordered, split_style, style_words

HEADING = "Requests whose client left: the work done for nobody"
CHART = "abandon.png"

# The scenarios whose users give up before the answer (loadtests/matrices/abandon.toml), in the
# order the section shows them; a run shows those whose users gave up on some request.
SCENARIOS: tuple[str, ...] = ("chat_abandon", "items_wait")
# What each scenario's users do, for the intro.
DOES: dict[str, str] = {
    "chat_abandon": "a non-streamed chat completion through the upstream",
    "items_wait": "a read behind a query that waits in the database",
}
# The server setting of the fix arm: cancel a request's work when its client leaves.
CANCEL_SETTING = "cancel_on_disconnect"
# Every statement the server's engine sent to its database (servers/metrics.py).
STATEMENTS = "lab_db_statements_total"
for _name in (*SCENARIOS, *DOES):
    if _name not in contract.SCENARIOS:
        raise RuntimeError(f"{_name} is not a scenario of the contract")
if CANCEL_SETTING not in contract.SERVER_ENV:
    raise RuntimeError(f"{CANCEL_SETTING} is not a server setting of the contract")

# Per cell, read from its files (cell.json, metrics.csv); the others are summary.csv's.
UPSTREAM_CALLS = "upstream_calls"
QUERIES = "queries"
REQUESTS = "requests"
OK = "ok"
GAVE_UP = "error_p50_ms"
IN_USE = "http_pool_peak_active"
CONN_WAITING = "http_pool_peak_waiting"
THREAD_WAITING = "threadpool_peak_waiting"
DB_CHECKED_OUT = "db_pool_peak_checked_out"
METRICS: tuple[str, ...] = (
    REQUESTS,
    OK,
    UPSTREAM_CALLS,
    QUERIES,
    IN_USE,
    CONN_WAITING,
    THREAD_WAITING,
    DB_CHECKED_OUT,
    GAVE_UP,
)
# The figure each column shows, in the report's words (a count, so no unit beyond its noun).
WORDS: dict[str, str] = {
    REQUESTS: "requests sent",
    OK: "answered ok",
    UPSTREAM_CALLS: "upstream calls started",
    QUERIES: "queries run",
    IN_USE: "upstream connections in use (peak)",
    CONN_WAITING: "waiting for an upstream connection (peak)",
    THREAD_WAITING: "waiting for a thread (peak)",
    DB_CHECKED_OUT: "DB connections checked out (peak)",
}
# What a scenario's table shows: a proxy scenario its upstream side, a DB scenario its database.
PROXY_COLUMNS: tuple[str, ...] = (
    REQUESTS,
    OK,
    UPSTREAM_CALLS,
    IN_USE,
    CONN_WAITING,
    THREAD_WAITING,
)
DB_COLUMNS: tuple[str, ...] = (REQUESTS, OK, QUERIES, DB_CHECKED_OUT, THREAD_WAITING)
# The chart's panels per scenario (what the work for nobody costs), each with its axis label.
PROXY_CHART: tuple[str, ...] = (UPSTREAM_CALLS, IN_USE, THREAD_WAITING)
DB_CHART: tuple[str, ...] = (QUERIES, THREAD_WAITING)
AXES: dict[str, str] = {
    UPSTREAM_CALLS: "upstream calls started per cell (calls)",
    QUERIES: "queries run per cell (statements)",
    IN_USE: "peak upstream connections in use (connections)",
    THREAD_WAITING: "peak requests waiting for a thread (requests)",
}
# A figure no repeat has: cell.json's upstream stats not recorded; else no scrape got through.
NOT_RECORDED = "not recorded"
NO_SCRAPE = "-"


def columns_of(scenario: str) -> tuple[str, ...]:
    """The figures a scenario's table shows: its database's for a DB scenario, else the
    upstream's."""
    return DB_COLUMNS if scenario in contract.DB_SCENARIOS else PROXY_COLUMNS


def chart_metrics(scenario: str) -> tuple[str, ...]:
    """The figures a scenario's row of the chart draws."""
    return DB_CHART if scenario in contract.DB_SCENARIOS else PROXY_CHART


def abandoned_scenarios(summary: pd.DataFrame) -> list[str]:
    """SCENARIOS of `summary` whose users gave up on some request (`timeouts`), in order."""
    if summary.empty or "scenario" not in summary:
        return []
    out = []
    for name in SCENARIOS:
        part = summary[summary["scenario"] == name]
        if len(part) and numeric(part, "timeouts").fillna(0).sum() > 0:
            out.append(name)
    return out


def cell_files(cell: Path) -> tuple[float, float]:
    """(UPSTREAM_CALLS, QUERIES) of one cell from its files, cell.json read once.

    Upstream calls: what the upstream served over the cell (cell.json `upstream_stats.requests`:
    the mock finishes every call it got, so the calls started). Queries: the statements the
    server sent to its database (a fresh server per cell) at the cell's last scrape of
    `/metrics` after its window opened (a scrape before the load counts nothing of it, and a
    blocked loop answers no later one). NaN for a figure not recorded."""
    try:
        record = load_cell(cell / CELL_FILE)
    except RunFormatError:
        return math.nan, math.nan
    value = (record.upstream_stats or {}).get("requests")
    calls = math.nan if isinstance(value, bool) or not isinstance(value, int | float) else value
    try:
        series = metric_series(load_metrics(cell / METRICS_FILE), STATEMENTS)
    except RunFormatError:
        return float(calls), math.nan
    if record.window_start is not None:
        series = series[series.index >= record.window_start]
    return float(calls), (float(series.iloc[-1]) if len(series) else math.nan)


def cell_figures(run: Run, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (cells x repeats) with UPSTREAM_CALLS and QUERIES read from each cell's files,
    and every figure of a failed repeat emptied (it describes nothing)."""
    rows = rows.copy()
    cells = [run.path / str(c) for c in column(rows, "cell_id", "")]
    figures = [cell_files(c) for c in cells]
    rows[UPSTREAM_CALLS] = [calls for calls, _ in figures]
    rows[QUERIES] = [queries for _, queries in figures]
    failed = column(rows, "status", "ok") != "ok"
    for m in METRICS:
        rows[m] = numeric(rows, m).mask(failed)
    rows["failed"] = failed.astype(int)
    return rows


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Per scenario x users x style x arm: each of METRICS over the repeats (`<m>`, `<m>_lo`,
    `<m>_hi`, `<m>_n` the repeats with a value), `repeats` and `failed`; in the section's order
    (SCENARIOS, users, styles as analysis.vocabulary orders them, the default arm first)."""
    by = ["scenario", "users", "style", "arm"]
    extra = {f"{m}_n": (m, "count") for m in METRICS}
    extra["failed"] = ("failed", "sum")
    frame = over_repeats(rows.assign(arm=arms(rows)), by, METRICS, extra)
    if frame.empty:
        return frame
    order = {
        "_scenario": frame["scenario"].map(SCENARIOS.index),
        "_style": frame["style"].map(ordered(frame["style"]).index),
        "_named": frame["arm"] != DEFAULT_ARM,
    }
    keys = ["_scenario", "users", "_style", "_named", "arm"]
    frame = frame.assign(**order).sort_values(keys, kind="stable")
    return frame.drop(columns=list(order)).reset_index(drop=True)


def figure(row: Mapping[str, object], metric: str) -> Repeats:
    """One figure of an aggregated row over its repeats."""
    return Repeats.from_row(row, metric, n=f"{metric}_n")


def _count(x: float) -> str:
    # A median of an even number of repeats may fall between two counts: `20.5`.
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def figure_text(row: Mapping[str, object], metric: str) -> str:
    """`440`; `542 (540–544)` when the repeats differ; `0 (1 of 2 repeats)` when only some
    repeats have it; `-` (no scrape) or `not recorded` when none has."""
    r = figure(row, metric)
    if not r.known:
        return NOT_RECORDED if metric == UPSTREAM_CALLS else NO_SCRAPE
    text = _count(r.median) if r.lo == r.hi else r.text(_count)
    ran = int(row["repeats"]) - int(row["failed"])  # type: ignore[call-overload]
    return text + (f" ({r.n} of {ran} repeats)" if r.n < ran else "")


def style_text(style: str) -> str:
    """A style in the report's words: `` `def` ``, `` `async def` + aiohttp ``."""
    variant, client = split_style(style)
    return style_words(variant, client)


def arm_text(arm: str) -> str:
    """`default` or `` `cancel` ``."""
    return "default" if arm == DEFAULT_ARM else f"`{arm}`"


def repeats_text(row: Mapping[str, object]) -> str:
    """`2`, or `2 (1 failed)`."""
    n, failed = int(row["repeats"]), int(row["failed"])  # type: ignore[call-overload]
    return f"{n} ({failed} failed)" if failed else str(n)


@dataclass(frozen=True)
class AbandonTable:
    """The section's figures per scenario x users x style x arm (`aggregate`), the run's
    settings that shaped them and each named arm's server settings."""

    scenarios: tuple[str, ...]
    frame: pd.DataFrame
    settings: dict[str, float]
    arm_settings: dict[str, str]

    def rows(self, scenario: str) -> pd.DataFrame:
        """One scenario's rows, in order."""
        return self.frame[self.frame["scenario"] == scenario]

    def shown(self) -> list[str]:
        """The scenarios with rows, in order."""
        return [s for s in self.scenarios if not self.rows(s).empty]


def run_settings(manifest: Mapping[str, object]) -> dict[str, float]:
    """The matrix settings that shaped the section's figures, as the manifest recorded them."""
    matrix = manifest.get("matrix")
    out: dict[str, float] = {}
    if isinstance(matrix, Mapping):
        for key in ("request_timeout_s", "ttft_ms", "db_wait_ms"):
            value = matrix.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = float(value)
    return out


def intro(scenarios: Sequence[str], settings: Mapping[str, float]) -> str:
    """What the scenarios do and how to read the tables."""
    shaped = []
    if "request_timeout_s" in settings:
        shaped.append(f"the load generator's request timeout {settings['request_timeout_s']:g} s")
    if "ttft_ms" in settings:
        shaped.append(f"the upstream's answer after {ms(settings['ttft_ms'])}")
    if "db_wait_ms" in settings:
        shaped.append(f"the query's wait in the database {ms(settings['db_wait_ms'])}")
    this_run = f" (this run: {', '.join(shaped)})" if shaped else ""
    does = ", ".join(f"`{s}` {DOES[s]}" for s in scenarios if s in DOES)
    return (
        "Each user gives up on its request before the answer and sends its next one at once: "
        f"{does}{this_run}. Starlette cancels nothing for a "
        "non-streamed request whose client left, so what the server does beyond the requests "
        "it answered ok it does for nobody. Per style and arm, over the repeats (the median, "
        "with the min–max in brackets where the repeats differ): requests sent in the window "
        "and answered ok; **upstream calls started**: what the upstream served over the whole "
        "cell, warm-up and drain included (cell.json `upstream_stats.requests`); **queries "
        f"run**: the statements the server sent to its database (metrics.csv `{STATEMENTS}` at "
        "the cell's last scrape after its window opened, a fresh server per cell); the "
        "**peaks** over the window's scrapes of the server's `/metrics` (summary.csv): upstream "
        "connections in use and requests waiting for one, requests waiting for a thread, DB "
        f"connections checked out. `{NO_SCRAPE}`: no scrape got through in any repeat; `(1 of 2 "
        "repeats)`: the figure of the repeats that have one."
    )


def arm_bullets(table: AbandonTable) -> list[str]:
    """What each named arm of the section changed."""
    named = sorted({str(a) for a in table.frame["arm"]} - {DEFAULT_ARM})
    out = []
    for arm in named:
        settings = table.arm_settings.get(arm, "")
        text = f"{arm_text(arm)}: " + (settings or "its settings are not in the manifest")
        if CANCEL_SETTING in settings:
            text += (
                f" (`{contract.SERVER_ENV[CANCEL_SETTING]}`): a request's work is cancelled "
                "when its client leaves, as far as its style allows"
            )
        out.append(text)
    return out


def scenario_table(rows: pd.DataFrame, scenario: str) -> Table:
    """One row per style x arm: its figures, then its repeats."""
    shown = columns_of(scenario)
    users = rows["users"].nunique() > 1
    header = ["style", "arm", *(["users"] if users else []), *(WORDS[m] for m in shown), "repeats"]
    body = []
    for _, r in rows.iterrows():
        cells = [style_text(str(r["style"])), arm_text(str(r["arm"]))]
        cells += [str(int(r["users"]))] if users else []
        cells += [figure_text(r, m) for m in shown]
        cells.append(repeats_text(r))
        body.append(cells)
    return Table(header, body)


def gave_up_text(rows: pd.DataFrame) -> str:
    """When the clients left: the median latency of the requests that did not end ok."""
    values = [figure(r, GAVE_UP).median for _, r in rows.iterrows()]
    known = [v for v in values if not math.isnan(v)]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = ms(lo) if round(lo) == round(hi) else f"{ms(lo)}–{ms(hi)}"
    return (
        f"The requests that did not end ok (a timeout: its client gave up) took {span} (median "
        "per cell, over the repeats)."
    )


def arm_changes(rows: pd.DataFrame, scenario: str) -> list[str]:
    """Per style and named arm: how each figure of the table moved from the default arm."""
    out = []
    for (users, style), part in rows.groupby(["users", "style"], sort=False):
        base = part[part["arm"] == DEFAULT_ARM]
        if base.empty:
            continue
        b = base.iloc[0]
        for _, r in part[part["arm"] != DEFAULT_ARM].iterrows():
            moves = []
            for m in columns_of(scenario)[2:]:
                before, after = figure(b, m), figure(r, m)
                if before.known and after.known and before.median != after.median:
                    moves.append(f"{WORDS[m]} {_count(before.median)} → {_count(after.median)}")
            if moves:
                at = f" at {int(users)} users" if rows["users"].nunique() > 1 else ""
                out.append(
                    f"{style_text(str(style))}{at}, default → {arm_text(str(r['arm']))}: "
                    + "; ".join(moves)
                )
    return out


def plot_abandon(ax: Axes, rows: pd.DataFrame, metric: str) -> Axes:
    """Grouped bars: per style one bar per arm (the default solid, a named arm hatched), in the
    style's colour, the median over the repeats with their min–max as whiskers."""
    styles = list(dict.fromkeys(rows["style"]))
    named = sorted({str(a) for a in rows["arm"]} - {DEFAULT_ARM})
    arm_order = [DEFAULT_ARM, *named]
    width = 0.8 / len(arm_order)
    known = [figure(r, metric) for _, r in rows.iterrows()]
    top = max((r.hi for r in known if r.known), default=0.0) or 1.0
    for _, row in rows.iterrows():
        offset = (arm_order.index(row["arm"]) - (len(arm_order) - 1) / 2) * width
        x = styles.index(row["style"]) + offset
        r = figure(row, metric)
        c = colour(str(row["style"]))
        if not r.known:
            note = NOT_RECORDED if metric == UPSTREAM_CALLS else "no scrape"
            ax.text(x, top * 0.02, note, rotation=90, ha="center", va="bottom", fontsize="x-small")
            continue
        hatch = "" if row["arm"] == DEFAULT_ARM else "//"
        ax.bar(x, r.median, width, color="white" if hatch else c, edgecolor=c, hatch=hatch, lw=1.5)
        if r.n > 1 and r.hi > r.lo:
            ax.errorbar(
                x, r.median, yerr=[[r.median - r.lo], [r.hi - r.median]], fmt="none", ecolor="0.2"
            )
        ax.text(x, r.hi + top * 0.01, _count(r.median), ha="center", va="bottom", fontsize="small")
    ax.set_xticks(range(len(styles)), [tick(s) for s in styles])
    ax.set_xlim(-0.6, len(styles) - 0.4)
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel(AXES[metric])
    ax.grid(True, axis="y", alpha=0.3)
    return ax


def tick(style: str) -> str:
    """A style under its bars, its library on a line of its own: `def`, `async def` / `+ sync
    lib`."""
    return plain(style_text(style)).replace(" + ", "\n+ ")


def arm_legend(arms_shown: Sequence[str]) -> list[Patch]:
    """The legend of the bars' fill: the default arm solid, a named arm hatched."""
    handles = [Patch(facecolor="0.55", edgecolor="0.55", label="default arm")]
    handles += [
        Patch(facecolor="white", edgecolor="0.3", hatch="//", label=f"arm {a}")
        for a in arms_shown
        if a != DEFAULT_ARM
    ]
    return handles


class Abandon:
    """The abandoned-requests section: scenarios whose users gave up before their answer."""

    key = "abandon"
    place = Place.FINDINGS
    reading: tuple[str, ...] = ()

    def scenarios(self, run: Run) -> list[str]:
        """SCENARIOS whose users gave up on some request (summary `timeouts`)."""
        return abandoned_scenarios(run.summary)

    def table(self, run: Run, scenarios: Sequence[str], decided: Verdicts) -> AbandonTable:
        """Every cell of the scenarios (at the reference token count) with its files read once,
        aggregated over the repeats."""
        rows = at_reference_tokens(run.summary)
        rows = rows[rows["scenario"].isin(list(scenarios))]
        frame = aggregate(cell_figures(run, rows))
        return AbandonTable(
            tuple(scenarios), frame, run_settings(run.manifest), fix_settings(run.manifest)
        )

    def charts(self, table: AbandonTable, out_dir: Path) -> list[Chart]:
        """One row of panels per scenario: the work done for nobody and what queued behind it,
        per style, default vs each named arm."""
        names = table.shown()
        if not names:
            return []
        width = max(len(chart_metrics(s)) for s in names)
        fig, axes = plt.subplots(
            len(names),
            width,
            figsize=(5 * width, 3.9 * len(names)),
            layout="constrained",
            squeeze=False,
        )
        for i, s in enumerate(names):
            metrics = chart_metrics(s)
            for j in range(width):
                ax = axes[i][j]
                if j >= len(metrics):
                    ax.set_visible(False)
                    continue
                rows = table.rows(s)
                # One load per panel: the highest (the abandon matrix runs one).
                users = int(rows["users"].max())
                plot_abandon(ax, rows[rows["users"] == users], metrics[j])
                title = f"{s} at {users} users: {plain(WORDS[metrics[j]])}"
                ax.set_title(title, fontsize="small")
        fig.suptitle("Work done for clients that had gone, per style: default vs each arm")
        shown = sorted({str(a) for a in table.frame["arm"]}, key=lambda a: (a != DEFAULT_ARM, a))
        fig.legend(handles=arm_legend(shown), loc="outside lower center", ncols=len(shown))
        return [
            save_chart(
                fig,
                out_dir / CHART,
                "Requests whose client left: work done for nobody, default vs each arm",
                "",
                "Median over the repeats (whiskers: min–max), in each style's colour; solid the "
                "default arm, hatched the named arm. Upstream calls over the whole cell; queries "
                "at the cell's last scrape; peaks over the window's scrapes (`no scrape`: none "
                "got through).",
            )
        ]

    def blocks(self, table: AbandonTable, charts: Sequence[Chart]) -> list[Block]:
        """The intro and the arms, per scenario its table, when the clients left and what each
        arm changed, then the chart."""
        blocks: list[Block] = [Heading(HEADING), Paragraph(intro(table.shown(), table.settings))]
        named = arm_bullets(table)
        if named:
            blocks.append(Bullets(named))
        for s in table.shown():
            rows = table.rows(s)
            blocks += [Heading(f"`{s}`", 3), scenario_table(rows, s)]
            gave_up = gave_up_text(rows)
            if gave_up:
                blocks.append(Paragraph(gave_up))
            changes = arm_changes(rows, s)
            if changes:
                blocks.append(Bullets(changes))
        blocks += [Image(c.path, c.title, c.caption) for c in charts]
        return blocks


SECTION = Abandon()
