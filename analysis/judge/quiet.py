"""How quiet the machine and the mock upstream were: calibration drift and upstream drift."""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import median
from typing import Any

import pandas as pd

import contract
from analysis.judge.cells import FAILED, outcomes

# The mock upstream should serve what it was configured to; more than 10% off and the proxy
# scenarios measured a different upstream than the one their settings name.
UPSTREAM_DRIFT_MAX = 0.10
# Two runs whose machines differ in speed by more than this are not comparable in absolute
# figures (the ratios between styles may still be).
COMPARABLE_SPEED = 0.10
CALIBRATION_NAMES: dict[str, str] = {
    "python_loop_per_s": "Python loop iterations/s",
    "asgi_hello_per_s": "ASGI /hello calls/s",
}


@dataclass(frozen=True)
class Calibration:
    """A run's calibration: each entry's label and figures, and each figure's max drift."""

    entries: tuple[dict[str, Any], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """The figures recorded, contract.CALIBRATION_KEYS first."""
        seen = [k for k in contract.CALIBRATION_KEYS if any(_num(e.get(k)) for e in self.entries)]
        extra = {
            k
            for e in self.entries
            for k in e
            if k not in ("label", "ts") and k not in seen and _num(e.get(k))
        }
        return (*seen, *sorted(extra))

    def values(self, key: str) -> list[float]:
        """One figure over the run, in order."""
        return [float(e[key]) for e in self.entries if _num(e.get(key))]

    def drift(self, key: str) -> float:
        """Max relative distance of a figure from its first value ("before"): 0.05 = 5%."""
        values = self.values(key)
        if len(values) < 2 or values[0] == 0:
            return 0.0
        return max(abs(v / values[0] - 1) for v in values)

    def max_drift(self) -> tuple[str, float]:
        """The figure that drifted most and by how much."""
        drifts = [(k, self.drift(k)) for k in self.keys]
        return max(drifts, key=lambda kv: kv[1]) if drifts else ("", 0.0)

    def typical(self, key: str) -> float:
        """The median of a figure over the run: what a comparison with another run uses."""
        values = self.values(key)
        return median(values) if values else math.nan


def _num(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def calibration(manifest: Mapping[str, Any]) -> Calibration | None:
    """The manifest's `calibration` list, or None when it recorded none."""
    entries = manifest.get("calibration")
    if not isinstance(entries, list) or not entries:
        return None
    found = Calibration(tuple(e for e in entries if isinstance(e, dict)))
    return found if found.keys else None


def speed_difference(a: Calibration, b: Calibration) -> tuple[str, float] | None:
    """The largest relative difference of a shared figure's median between two runs."""
    diffs = []
    for key in a.keys:
        if key in b.keys and a.typical(key) > 0:
            diffs.append((key, b.typical(key) / a.typical(key) - 1))
    return max(diffs, key=lambda kv: abs(kv[1])) if diffs else None


def comparability(a: Calibration | None, b: Calibration | None, name_a: str, name_b: str) -> str:
    """The compare report's sentence: are the two runs' absolute figures comparable?"""
    for cal, name in ((a, name_a), (b, name_b)):
        if cal is None:
            return f"not comparable: no calibration recorded in `{name}`"
    assert a is not None and b is not None
    diff = speed_difference(a, b)
    if diff is None:
        return "not comparable: the two runs recorded no calibration figure in common"
    key, d = diff
    what = CALIBRATION_NAMES.get(key, key)
    if abs(d) <= COMPARABLE_SPEED:
        return (
            f"comparable: machine speed differs by {abs(d):.1%} ({what}, median over each run; "
            f"within {COMPARABLE_SPEED:.0%})"
        )
    return (
        f"not comparable in absolute figures: machine speed differs by {abs(d):.1%} ({what}, "
        f"median over each run; more than {COMPARABLE_SPEED:.0%}); ratios between styles "
        "measured within each run may still be compared"
    )


def upstream_drift(summary: pd.DataFrame) -> pd.DataFrame:
    """Per proxy scenario: configured latency, cells, median and max drift of what the upstream
    served (ms and relative), and whether it passed UPSTREAM_DRIFT_MAX. Empty when unrecorded."""
    columns = ["scenario", "configured_ms", "cells", "median_ms", "max_ms", "max_rel", "warn"]
    if "upstream_latency_ms" not in summary:
        return pd.DataFrame(columns=columns)
    rows = summary[(outcomes(summary) != FAILED) & summary["upstream_latency_ms"].notna()]
    drift = rows.get("upstream_drift_ms")
    if drift is None or drift.isna().all():
        served = rows.get("upstream_served_ms")
        if served is None or served.isna().all():
            return pd.DataFrame(columns=columns)
        drift = served - rows["upstream_latency_ms"]
    rows = rows.assign(_drift=drift).dropna(subset=["_drift"])
    out = []
    for scenario, part in rows.groupby("scenario", sort=False):
        configured = float(part["upstream_latency_ms"].median())
        worst = part.loc[part["_drift"].abs().idxmax(), "_drift"]
        rel = abs(float(worst)) / configured if configured > 0 else math.nan
        out.append(
            {
                "scenario": scenario,
                "configured_ms": configured,
                "cells": len(part),
                "median_ms": float(part["_drift"].median()),
                "max_ms": float(worst),
                "max_rel": rel,
                "warn": bool(rel > UPSTREAM_DRIFT_MAX),
            }
        )
    return pd.DataFrame(out, columns=columns)


def drifting_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """Cells whose upstream served more than UPSTREAM_DRIFT_MAX off its configured latency."""
    if not {"upstream_latency_ms", "upstream_drift_ms"} <= set(summary.columns):
        return summary.iloc[0:0]
    configured = summary["upstream_latency_ms"]
    rel = summary["upstream_drift_ms"].abs() / configured.where(configured > 0)
    return summary[(rel > UPSTREAM_DRIFT_MAX) & (outcomes(summary) != FAILED)]
