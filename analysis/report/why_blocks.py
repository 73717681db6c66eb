"""The report's mechanism parts: the verdict table's why column and what the server saw."""

from collections.abc import Sequence

import pandas as pd

from analysis.document import Block, Heading, Paragraph, Table
from analysis.fmt import ms_or_missing, number
from analysis.judge.transform import MECHANISM, Stall, at_users
from analysis.judge.verdict import Verdict
from analysis.judge.why import NOTHING, Limits, explain, thresholds_text
from analysis.vocabulary import label, ordered


def why_column(
    agg: pd.DataFrame,
    verdicts: list[Verdict],
    limits: Limits,
    stalls: Sequence[Stall] = (),
) -> dict[str, str]:
    """Per scenario, the mechanism the losing (and blocking) styles show at the verdict's load;
    a style that stalled there is named with its evidence first."""
    out = _why(agg, verdicts, limits)
    for v in verdicts:
        here = [s for s in stalls if s.scenario == v.scenario and s.users == v.users]
        if here:
            lines = [s.text() for s in here]
            rest = out.get(v.scenario, "")
            keep = rest if rest not in ("", NOTHING, "n/a", "not recorded") else ""
            out[v.scenario] = "\n".join([*lines, *([keep] if keep else [])])
    return out


def _why(agg: pd.DataFrame, verdicts: list[Verdict], limits: Limits) -> dict[str, str]:
    recorded = [c for c in MECHANISM if c in agg and agg[c].notna().any()]
    out: dict[str, str] = {}
    for v in verdicts:
        if v.users is None:
            out[v.scenario] = "n/a"
            continue
        at = at_users(agg, v.scenario, v.users)
        # No measurement at all is "not recorded", not "nothing crossed a threshold".
        if not recorded or at[recorded].isna().all().all():
            out[v.scenario] = "not recorded"
            continue
        out[v.scenario] = explain(at, v.winners, limits)
        scraped = [c for c in recorded if c != "server_cpu_pct"]
        if out[v.scenario] == NOTHING and (not scraped or at[scraped].isna().all().all()):
            # A run from before /metrics: "nothing seen" would overstate what was looked at.
            out[v.scenario] += " (only server CPU recorded)"
    return out


MECHANISM_LABELS: dict[str, str] = {
    "server_cpu_pct": "server CPU %",
    "loop_lag_max_ms": "loop lag max ms",
    "loop_lag_p99_ms": "loop lag p99 ms",
    "threadpool_peak_in_use": "threadpool peak in use",
    "threadpool_peak_waiting": "threadpool peak waiting",
    "http_pool_peak_waiting": "HTTP pool peak waiting",
    "db_pool_peak_checked_out": "DB pool peak checked out",
    "overhead_p99_ms": "overhead p99 ms",
}
# The issue's closing note: at `chat`'s highest load, what each style's server saw.
CLOSING_SCENARIO = "chat"


def mechanism_blocks(agg: pd.DataFrame, verdicts: list[Verdict]) -> list[Block]:
    """What the server reported at each verdict's load (CPU, loop lag, pools), if recorded."""
    columns = [c for c in MECHANISM if c in agg and agg[c].notna().any()]
    if not columns:
        return []
    rows = []
    for v in verdicts:
        if v.users is None:
            continue
        at = at_users(agg, v.scenario, v.users)
        for style in ordered(at.index):
            values = [at.loc[style, c] for c in columns]
            rows.append([f"`{v.scenario}`", str(v.users), label(style), *map(number, values)])
    return [
        Heading("Why: what the server saw at the compared load"),
        Paragraph(
            "Medians over the counted repeats of the server's own measurements. High loop lag "
            "means something blocked the event loop; threadpool waiting at the token limit means "
            "`def` ran out of threads; pool waiting means requests queued for a connection."
        ),
        Table(["scenario", "users", "style", *[MECHANISM_LABELS[c] for c in columns]], rows),
        Paragraph(f"Thresholds of the verdict table's why column: {thresholds_text()}."),
        *closing_note(agg, verdicts),
    ]


def closing_note(agg: pd.DataFrame, verdicts: list[Verdict]) -> list[Block]:
    """For `chat` at its compared load: each style's max loop lag, threadpool waiters, overhead."""
    v = next((v for v in verdicts if v.scenario == CLOSING_SCENARIO and v.users), None)
    if v is None or v.users is None:
        return []
    at = at_users(agg, v.scenario, v.users)
    parts = []
    for style in ordered(at.index):
        row = at.loc[style]
        parts.append(
            f"`{style}` max loop lag {ms_or_missing(row.get('loop_lag_max_ms'))}, "
            f"peak threadpool waiters {number(row.get('threadpool_peak_waiting', float('nan')))}, "
            f"overhead p99 {ms_or_missing(row.get('overhead_p99_ms'))}"
        )
    return [Paragraph(f"In short, `{v.scenario}` at {v.users} users: " + "; ".join(parts) + ".")]
