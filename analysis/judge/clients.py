"""Which HTTP client (`make bench-clients`, issue 11): each handler style with each client.

Per scenario with at least two clients for one style: one row per style x client at the
scenario's compared load, `def` + httpx the baseline. Where a style's cells also ran in the
`stream_fix` arm (chat_stream: plain `def` streaming stalls whatever the client), that style's
rows come from the arm and are labelled so. Numbers are medians over the counted repeats (ok,
valid, steady, not stalled), as the verdicts count them; the excluded repeats are flagged. A
client "changes throughput" only when the ratio to the style's httpx row clears the run's noise
the way a verdict's lead must (analysis.judge.verdict.is_clear). Pure transforms: no I/O.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

import contract
from analysis.fmt import ms, rate
from analysis.judge.cells import (
    FAILED,
    INVALID,
    NOT_STEADY,
    OK,
    STALLED,
    arms,
    outcomes,
)
from analysis.judge.noise import Noise, scenario_noise
from analysis.judge.repeats import Ratio, Repeats
from analysis.judge.samples import tail_text
from analysis.judge.transform import aggregate_rows, ratio_with_spread, require_columns, scenarios
from analysis.judge.verdict import MIN_REPEATS, fmt_ratio, invert, is_clear
from analysis.vocabulary import (
    BASELINE,
    BASELINE_CLIENT,
    DEFAULT_ARM,
    STREAM_FIX_ARM,
    names_client,
    style_of,
    style_words,
    variant_words,
)

# STREAM_FIX_ARM: the arm a style's cells come from where plain `def` cannot be compared.
CLIENT_ARMS: tuple[str, ...] = (DEFAULT_ARM, STREAM_FIX_ARM)
ARM_NOTES: dict[str, str] = {STREAM_FIX_ARM: "with the stream fix"}
# A client's throughput against its style's httpx row.
FASTER = "faster"
SLOWER = "slower"
WITHIN = "within noise"
NO_INTERVAL = "one repeat"
UNKNOWN = "n/a"

COLUMNS: tuple[str, ...] = (
    "scenario",
    "users",
    "variant",
    "client",
    "arm",
    "style",
    "label",
    "repeats",
    "counted",
    "stalled",
    "not_steady",
    "invalid",
    "failed",
    "flags",
    "rps",
    "rps_lo",
    "rps_hi",
    "rps_text",
    "p99_ms",
    "p99_text",
    "cpu_ms_per_req",
    "cpu_lo",
    "cpu_hi",
    "ratio",
    "ratio_lo",
    "ratio_hi",
    "baseline",
)


def row_label(variant: str, client: str, arm: str = DEFAULT_ARM) -> str:
    """`` `def` + httpx ``, `` `def` + httpx (with the stream fix) ``."""
    text = style_words(variant, client, always_client=True)
    note = ARM_NOTES.get(arm, f"arm `{arm}`" if arm else "")
    return f"{text} ({note})" if note else text


def client_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary rows the comparison reads: proxy cells of the base run and the stream_fix arm;
    per scenario x variant, the arm's cells replace the base ones when it ran that variant."""
    require_columns(summary, ["scenario", "variant", "client", "users", "status", "valid"])
    rows = summary.assign(_arm=arms(summary))
    rows = rows[rows["_arm"].isin(CLIENT_ARMS) & rows["client"].map(names_client)]
    arm_rows = rows[rows["_arm"] == STREAM_FIX_ARM]
    fixed = set(zip(arm_rows["scenario"], arm_rows["variant"], strict=True))
    keep = [
        (arm == STREAM_FIX_ARM) == ((s, v) in fixed)
        for s, v, arm in zip(rows["scenario"], rows["variant"], rows["_arm"], strict=True)
    ]
    # A Series, not a list: an empty list would select no columns rather than no rows.
    return rows[pd.Series(keep, index=rows.index, dtype=bool)]


# `make bench` already runs `async def` + aiohttp beside httpx as a style of its own (judged in
# the verdicts): it alone does not make a client comparison, so the section's trigger skips it.
VERDICT_CLIENTS: frozenset[str] = frozenset({"aiohttp"})


def _clients_per_variant(rows: pd.DataFrame) -> pd.Series:
    # Clients with a counted cell only: a stalls run's stalled `def` + httpx2 cells compare nothing.
    if rows.empty:
        return rows.groupby(["scenario", "users", "variant"])["client"].nunique()
    rows = rows[~rows["client"].isin(VERDICT_CLIENTS) & (outcomes(rows) == OK)]
    return rows.groupby(["scenario", "users", "variant"])["client"].nunique()


def client_scenarios(summary: pd.DataFrame) -> list[str]:
    """Scenarios where some style ran with at least two clients at one load (aiohttp, already a
    verdict style in every `make bench`, not counted), in the contract's order."""
    if "client" not in summary or "variant" not in summary or summary.empty:
        return []
    counts = _clients_per_variant(client_rows(summary))
    present = {str(s) for (s, _, _), n in counts.items() if n >= 2}
    return [s for s in scenarios(summary) if s in present]


def client_users(rows: pd.DataFrame, scenario: str) -> int | None:
    """The highest load at which a style of `scenario` ran with two clients or more (aiohttp
    not counted: VERDICT_CLIENTS)."""
    counts = _clients_per_variant(rows[rows["scenario"] == scenario])
    levels = [int(u) for (_, u, _), n in counts.items() if n >= 2]
    return max(levels) if levels else None


def _flags(part: pd.DataFrame) -> dict[str, int | str]:
    kinds = outcomes(part)
    counts = {
        "repeats": len(part),
        "counted": int((kinds == OK).sum()),
        "stalled": int((kinds == STALLED).sum()),
        "not_steady": int((kinds == NOT_STEADY).sum()),
        "invalid": int((kinds == INVALID).sum()),
        "failed": int((kinds == FAILED).sum()),
    }
    n = counts["repeats"]
    named = [
        f"{counts[key]} of {n} {what}"
        for key, what in (
            ("stalled", STALLED),
            ("not_steady", NOT_STEADY),
            ("invalid", INVALID),
            ("failed", FAILED),
        )
        if counts[key]
    ]
    return {**counts, "flags": "; ".join(named)}


def _order_key(record: Mapping[str, object]) -> tuple:
    variant, client = str(record["variant"]), str(record["client"])
    v_rank = contract.VARIANTS.index(variant) if variant in contract.VARIANTS else 99
    c_rank = contract.CLIENTS.index(client) if client in contract.CLIENTS else 99
    return (v_rank, variant, c_rank, client)


def client_table(summary: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """Per scenario (default: client_scenarios): one row per style x client (COLUMNS) at the
    scenario's compared load; throughput, p99 and CPU per request over the counted repeats, the
    throughput ratio to `def` + httpx with its repeat interval, and the excluded repeats."""
    names = client_scenarios(summary) if names is None else names
    rows = client_rows(summary)
    records: list[dict[str, object]] = []
    for scenario in names:
        users = client_users(rows, scenario)
        if users is None:
            continue
        here = rows[(rows["scenario"] == scenario) & (rows["users"] == users)]
        here = here.assign(
            style=[style_of(v, c) for v, c in zip(here["variant"], here["client"], strict=True)]
        )
        counted = here[outcomes(here) == OK]
        agg = aggregate_rows(counted).set_index("style") if len(counted) else pd.DataFrame()
        part: list[dict[str, object]] = []
        for (variant, client, arm), cells in here.groupby(["variant", "client", "_arm"]):
            style = style_of(str(variant), str(client))
            record: dict[str, object] = {
                "scenario": scenario,
                "users": users,
                "variant": str(variant),
                "client": str(client),
                "arm": str(arm),
                "style": style,
                "label": row_label(str(variant), str(client), str(arm)),
                **_flags(cells),
            }
            record.update(_numbers(agg.loc[style] if style in agg.index else None))
            part.append(record)
        part.sort(key=_order_key)
        base = next(
            (r for r in part if r["variant"] == BASELINE and r["client"] == BASELINE_CLIENT),
            None,
        )
        for r in part:
            r["baseline"] = r is base
            mid, lo, hi = _ratio(r, base)
            r.update(ratio=mid, ratio_lo=lo, ratio_hi=hi)
        records += part
    if not records:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.DataFrame(records, columns=list(COLUMNS))


def _numbers(agg: pd.Series | None) -> dict[str, object]:
    if agg is None:
        nan = math.nan
        return {
            "rps": nan,
            "rps_lo": nan,
            "rps_hi": nan,
            "rps_text": "n/a",
            "p99_ms": nan,
            "p99_text": "n/a",
            "cpu_ms_per_req": nan,
            "cpu_lo": nan,
            "cpu_hi": nan,
        }
    cpu = Repeats.from_row(agg, "cpu_ms_per_req")
    rps = Repeats.from_row(agg, "rps")
    p99, _ = tail_text(agg)
    return {
        "rps": rps.median,
        "rps_lo": rps.lo,
        "rps_hi": rps.hi,
        "rps_text": rps.text(),
        "p99_ms": float(agg["p99_ms"]),
        "p99_text": p99,
        "cpu_ms_per_req": cpu.median,
        "cpu_lo": cpu.lo,
        "cpu_hi": cpu.hi,
    }


def _spread(record: Mapping[str, object]) -> pd.Series:
    return pd.Series(
        {"rps": record["rps"], "rps_lo": record["rps_lo"], "rps_hi": record["rps_hi"]}, dtype=float
    )


def _ratio(record: Mapping[str, object], base: Mapping[str, object] | None) -> Ratio:
    """record / base throughput with the interval verdicts use (min/max, max/min)."""
    if base is None:
        return math.nan, math.nan, math.nan
    return ratio_with_spread(_spread(record), _spread(base), "rps")


def client_noise(summary: pd.DataFrame, scenario: str) -> Noise:
    """The noise rule of the verdicts (median relative repeat spread of rps, floor MIN_NOISE),
    measured on the cells this comparison counts."""
    rows = client_rows(summary)
    rows = rows[(rows["scenario"] == scenario) & (outcomes(rows) == OK)]
    if rows.empty:
        return scenario_noise(pd.DataFrame(), scenario)
    rows = rows.assign(
        style=[style_of(v, c) for v, c in zip(rows["variant"], rows["client"], strict=True)]
    )
    return scenario_noise(aggregate_rows(rows), scenario)


# --- the sentence: from the numbers --------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One client against its style's httpx row: the ratio and whether it clears the noise."""

    variant: str
    client: str
    against: str
    ratio: Ratio
    outcome: str


def compare(a: Mapping[str, object], b: Mapping[str, object], threshold: float) -> str:
    """FASTER / SLOWER / WITHIN: a's throughput against b's, beyond `threshold` or not."""
    if int(a["counted"]) < MIN_REPEATS or int(b["counted"]) < MIN_REPEATS:  # type: ignore[call-overload]
        return NO_INTERVAL if int(a["counted"]) and int(b["counted"]) else UNKNOWN  # type: ignore[call-overload]
    ratio = ratio_with_spread(_spread(a), _spread(b), "rps")
    if math.isnan(ratio[0]):
        return UNKNOWN
    if is_clear(ratio, threshold):
        return FASTER
    if is_clear(invert(ratio), threshold):
        return SLOWER
    return WITHIN


def changes(table: pd.DataFrame, scenario: str, threshold: float) -> list[Change]:
    """Per style with two clients or more: each other client against the style's httpx row (or
    its first client when httpx did not run)."""
    part = table[table["scenario"] == scenario]
    out = []
    for variant in dict.fromkeys(part["variant"]):
        rows = [r for _, r in part[part["variant"] == variant].iterrows()]
        if len(rows) < 2:
            continue
        ref = next((r for r in rows if r["client"] == BASELINE_CLIENT), rows[0])
        for r in rows:
            if r is ref:
                continue
            ratio = ratio_with_spread(_spread(r), _spread(ref), "rps")
            out.append(
                Change(
                    str(variant),
                    str(r["client"]),
                    str(ref["client"]),
                    ratio,
                    compare(r, ref, threshold),
                )
            )
    return out


def _change_text(c: Change, threshold: float) -> str:
    ratio = fmt_ratio(c.ratio)
    if c.outcome == FASTER:
        return f"{c.client} is faster than {c.against} beyond the noise ({ratio})"
    if c.outcome == SLOWER:
        return f"{c.client} is slower than {c.against} beyond the noise ({ratio})"
    if c.outcome == WITHIN:
        return (
            f"{c.client} does not change throughput beyond the run's {threshold:.0%} noise "
            f"({ratio} of {c.against})"
        )
    if c.outcome == NO_INTERVAL:
        return f"{c.client} vs {c.against}: {ratio}, one counted repeat, no interval"
    return f"{c.client} vs {c.against}: not compared (no counted repeat)"


def sentence(table: pd.DataFrame, scenario: str, noise: Noise | float) -> str:
    """One sentence for a scenario: the fastest style x client, then per style whether changing
    the client changed throughput beyond the noise; all from the numbers."""
    threshold = noise.value if isinstance(noise, Noise) else float(noise)
    part = table[table["scenario"] == scenario]
    if part.empty:
        return f"`{scenario}`: no cell to compare."
    users = int(part["users"].iloc[0])
    ranked = part[part["rps"].notna()].sort_values("rps", ascending=False, kind="stable")
    parts: list[str] = []
    if ranked.empty:
        parts.append("no style x client has a counted repeat")
    else:
        top = ranked.iloc[0]
        head = f"the fastest pair is {top['label']} at {rate(float(top['rps']))}"
        if len(ranked) > 1:
            second = ranked.iloc[1]
            verdict = compare(top, second, threshold)
            ratio = fmt_ratio(ratio_with_spread(_spread(top), _spread(second), "rps"))
            if verdict == FASTER:
                head += f", ahead of {second['label']} beyond the noise ({ratio})"
            else:
                head += f", not clearly ahead of {second['label']} ({ratio}, {verdict})"
        parts.append(head)
    by_variant: dict[str, list[str]] = {}
    cs = changes(table, scenario, threshold)
    for c in cs:
        by_variant.setdefault(c.variant, []).append(_change_text(c, threshold))
    for variant, texts in by_variant.items():
        arm = str(part.loc[part["variant"] == variant, "arm"].iloc[0])
        note = f" and {ARM_NOTES.get(arm, f'arm `{arm}`').removeprefix('with ')}" if arm else ""
        parts.append(f"with {variant_words(variant)}{note}, " + "; ".join(texts))
    text = "; ".join(parts)
    return f"`{scenario}` at {users} users: {text}."


def cpu_text(value: float, lo: float, hi: float, repeats: int) -> str:
    """`1.2 ms (1.1–1.3)` CPU per request, or n/a."""
    if math.isnan(value):
        return "n/a"
    if repeats > 1 and not (math.isnan(lo) or math.isnan(hi)) and not math.isclose(lo, hi):
        return f"{value:.2f} ms ({lo:.2f}–{hi:.2f})"
    return f"{value:.2f} ms" if value < 10 else ms(value)
