"""Warnings a reader needs before trusting a run: excluded cells, saturation, spread, errors."""

from dataclasses import dataclass

import pandas as pd

from analysis.transform import excluded, relative_spread, require_columns, usable

# Locust warns itself above 90% CPU; past that its numbers describe Locust, not the server.
LOADGEN_SATURATED_PCT = 90.0
# More failed requests than this in a valid cell deserves a look.
ERROR_RATE = 0.01


@dataclass(frozen=True)
class Caveat:
    """One warning: what kind, about which cell, and the detail."""

    kind: str
    cell: str
    detail: str


def caveats(
    summary: pd.DataFrame,
    agg: pd.DataFrame,
    thresholds: dict[str, float],
    missing_columns: tuple[str, ...] = (),
) -> list[Caveat]:
    """Every warning about a run, most serious first."""
    require_columns(summary, ["cell_id", "status", "valid", "reason", "invalid_reason"], "summary")
    out: list[Caveat] = []
    bad = excluded(summary)
    for row in bad[bad["status"] != "ok"].itertuples():
        out.append(Caveat("failed cell", str(row.cell_id), str(row.reason) or "no reason given"))
    for row in bad[bad["status"] == "ok"].itertuples():
        out.append(
            Caveat("invalid cell", str(row.cell_id), str(row.invalid_reason) or "no reason given")
        )
    ok = usable(summary)
    if "loadgen_cpu_pct" in ok:
        hot = ok[ok["loadgen_cpu_pct"] >= LOADGEN_SATURATED_PCT]
        for row in hot.itertuples():
            out.append(
                Caveat(
                    "saturated load generator",
                    str(row.cell_id),
                    f"Locust at {row.loadgen_cpu_pct:.0f}% of a core (>= "
                    f"{LOADGEN_SATURATED_PCT:.0f}%): the throughput may be Locust's limit",
                )
            )
    if not agg.empty:
        spread = relative_spread(agg)
        for (_, row), s in zip(agg.iterrows(), spread, strict=True):
            limit = thresholds.get(str(row["scenario"]), 0.10)
            if row["repeats"] >= 2 and s > limit:
                out.append(
                    Caveat(
                        "high run-to-run spread",
                        f"{row['scenario']} / {row['style']} / {row['users']} users",
                        f"throughput varies {s:.0%} between repeats (noise threshold {limit:.0%})",
                    )
                )
    if {"failures", "requests"} <= set(ok.columns):
        rate = ok["failures"].astype(float) / ok["requests"].astype(float).where(ok["requests"] > 0)
        for row, r in zip(ok.itertuples(), rate, strict=True):
            if pd.notna(r) and r > ERROR_RATE:
                out.append(
                    Caveat("failed requests", str(row.cell_id), f"{r:.1%} of requests failed")
                )
    if "cut_off" in ok:
        for row in ok[ok["cut_off"].fillna(0) > 0].itertuples():
            out.append(
                Caveat(
                    "requests cut off",
                    str(row.cell_id),
                    f"{row.cut_off} requests still in flight when the window closed",
                )
            )
    if missing_columns:
        out.append(
            Caveat(
                "missing columns",
                "summary.csv",
                f"optional columns absent, left empty: {', '.join(missing_columns)}",
            )
        )
    return out
