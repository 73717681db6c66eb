"""The SLO capacity search: the highest offered rate at which a variant still meets the SLO.

As vLLM's `--goodput` and GuideLLM's sweeps do it, in two phases over rate-mode cells:
1. the ladder (the matrix's `rates`, rising): run each rate until one does not pass;
2. bisection between the last rate that passed and the first that did not, `bisect_steps` times
   (each step halves the bracket; whole req/s, so it stops early once the bracket is 1 wide).

A rate that cannot be judged (the cell failed, or the load side limited it: `invalid`) ends the
ladder like a failure, but the search then says the capacity is a lower bound (`load_side`),
never that the server failed there. The logic here is pure: `next_rate` decides from what was
judged so far, `capacity_row` turns a finished search into its capacity.csv row; the runner
supplies the cells.
"""

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import CAPACITY_COLUMNS
from contract.slo import FAIL, PASS, Slo, SloCheck


@dataclass
class Search:
    """One search's state: each rate tried, in order, with its judgement and summary row."""

    scenario: str
    variant: str
    client: str
    repeat: int
    arm: str = ""
    tried: dict[int, tuple[SloCheck, dict[str, Any]]] = field(default_factory=dict)

    def lowest_miss(self) -> int | None:
        """The lowest rate tried that did not pass (None: all passed)."""
        misses = [r for r, (j, _) in self.tried.items() if j.status != PASS]
        return min(misses) if misses else None

    def highest_pass(self, below: int | None = None) -> int | None:
        """The highest rate that passed (below `below`, when given)."""
        passes = [
            r
            for r, (j, _) in self.tried.items()
            if j.status == PASS and (below is None or r < below)
        ]
        return max(passes) if passes else None


def next_rate(search: Search, ladder: list[int], steps: int) -> int | None:
    """The next rate to try, or None when the search is over."""
    miss = search.lowest_miss()
    if miss is None:
        # Still climbing the ladder.
        return next((r for r in ladder if r not in search.tried), None)
    low = search.highest_pass(below=miss)
    if low is None:
        return None  # the lowest rate tried already missed
    bisected = sum(1 for r in search.tried if r not in ladder)
    mid = (low + miss) // 2
    if bisected >= steps or mid <= low or mid in search.tried:
        return None
    return mid


def run_search(
    search: Search,
    ladder: list[int],
    steps: int,
    measure: Callable[[int], tuple[SloCheck, dict[str, Any]]],
) -> Search:
    """Measure rates until `next_rate` says the search is over."""
    while (rate := next_rate(search, ladder, steps)) is not None:
        search.tried[rate] = measure(rate)
    return search


def capacity_row(search: Search, slo: Slo) -> dict[str, Any]:
    """The capacity.csv row of a finished search (contract.CAPACITY_TYPES)."""
    miss = search.lowest_miss()
    capacity = search.highest_pass(below=miss)
    limit_reason = ""
    if miss is None:
        bound = "above_highest"
    else:
        judgement = search.tried[miss][0]
        limit_reason = judgement.why
        if capacity is None:
            bound = "below_lowest"
        else:
            bound = "bracketed" if judgement.status == FAIL else "load_side"
    p99 = None if capacity is None else search.tried[capacity][1].get("p99_ms")
    p99 = None if p99 is None else round(float(p99), 3)
    ids = [row.get("cell_id", "") for _, (_, row) in sorted(search.tried.items())]
    return {
        "scenario": search.scenario,
        "variant": search.variant,
        "client": search.client,
        "arm": search.arm,
        "repeat": search.repeat,
        "slo": slo.text(),
        "capacity_rps": capacity,
        "limit_rps": miss,
        "bound": bound,
        "limit_reason": limit_reason,
        "p99_at_capacity_ms": p99,
        "cells": len(search.tried),
        "cell_ids": " ".join(ids),
    }


def write_capacity(run_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write capacity.csv (every finished search so far)."""
    path = run_dir / "capacity.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CAPACITY_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in CAPACITY_COLUMNS})
    return path
