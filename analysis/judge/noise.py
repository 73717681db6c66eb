"""Noise from the run itself: how much a scenario's cells varied between repeats.

For each scenario, noise = max(contract.MIN_NOISE, median over its cells of the relative repeat
spread (max - min) / median of the verdict metric). A lead counts only when it beats it.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

import contract
from analysis.judge.transform import relative_spread

# The opening's spread table: the typical cell and the worst tenth.
SPREAD_QUANTILE = 0.90


@dataclass(frozen=True)
class Noise:
    """One scenario's noise threshold and where it came from."""

    scenario: str
    value: float
    metric: str = "rps"
    # Median relative repeat spread and how many cells (with >= 2 repeats) it is over.
    measured: float = math.nan
    cells: int = 0
    override: bool = False

    def text(self) -> str:
        """`5% (median repeat spread 3.2% over 12 cells; floor 5%)`."""
        if self.override:
            return f"{self.value:.0%} (set with --noise)"
        if self.cells == 0:
            return f"{self.value:.0%} (floor: no cell with 2 repeats)"
        return (
            f"{self.value:.0%} (median repeat spread {self.measured:.1%} over {self.cells} "
            f"cell{'s' if self.cells != 1 else ''}; floor {contract.MIN_NOISE:.0%})"
        )


def spreads(agg: pd.DataFrame, metric: str) -> pd.Series:
    """Relative repeat spread of `metric` per aggregated row with >= 2 repeats and a value."""
    if agg.empty or metric not in agg:
        return pd.Series(dtype=float)
    rows = agg[(agg["repeats"] >= 2) & agg[metric].notna() & (agg[metric] != 0)]
    if rows.empty:
        return pd.Series(dtype=float)
    return relative_spread(rows, metric).replace([np.inf, -np.inf], np.nan).dropna()


def scenario_noise(
    agg: pd.DataFrame, scenario: str, metric: str = "rps", override: float | None = None
) -> Noise:
    """The noise threshold of `scenario` from its cells' repeat spread of `metric`."""
    if override is not None:
        return Noise(scenario, override, metric, override=True)
    part = spreads(agg[agg["scenario"] == scenario] if not agg.empty else agg, metric)
    if part.empty:
        return Noise(scenario, contract.MIN_NOISE, metric)
    measured = float(part.median())
    return Noise(scenario, max(contract.MIN_NOISE, measured), metric, measured, len(part))


def spread_table(agg: pd.DataFrame, scenario: str) -> dict[str, float | int]:
    """Median and 90th percentile of the relative rps and p99 spread of one scenario's cells.

    The p99 spread counts only cells whose every repeat has a p99 (the sample rule: an
    aggregated p99 is known only then, analysis.judge.repeats).
    """
    part = agg[agg["scenario"] == scenario] if not agg.empty else agg
    rps = spreads(part, "rps")
    p99 = spreads(part, "p99_ms")

    def q(values: pd.Series, at: float) -> float:
        return float(values.quantile(at)) if not values.empty else math.nan

    return {
        "cells": len(rps),
        "rps_median": q(rps, 0.5),
        "rps_p90": q(rps, SPREAD_QUANTILE),
        "p99_cells": len(p99),
        "p99_median": q(p99, 0.5),
        "p99_p90": q(p99, SPREAD_QUANTILE),
    }
