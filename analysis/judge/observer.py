"""The observer effect: the same cells with the server's /metrics monitor and Server-Timing off.

Rows with a non-empty `arm` are never in the style aggregates; here each arm that ran with
`observe` False (e.g. `noobs`) is set against the default arm's same scenario x style x users.
"""

import math

import pandas as pd

from analysis.judge.cells import arms, column
from analysis.judge.repeats import Ratio
from analysis.judge.samples import common_tail
from analysis.judge.transform import GROUP, aggregate_rows, ratio_with_spread, usable
from analysis.vocabulary import DEFAULT_ARM


def observer_arms(summary: pd.DataFrame) -> list[str]:
    """The arms that ran with the observer off (`observe` False): the observer-effect arms.

    Other arms change another server setting (e.g. the stall fixes of `make bench-stalls`):
    set against the default they measure that setting, not the observer.
    """
    named = arms(summary)
    off = ~column(summary, "observe", True).astype(bool)
    return sorted(set(named[off & (named != DEFAULT_ARM)]))


def observer_effect(summary: pd.DataFrame) -> pd.DataFrame:
    """Per arm x scenario x style x users in both arms: observe-on / observe-off ratios.

    `rps_ratio` (on / off; below 1 = observing costs throughput) and `tail_ratio` (on / off at
    the highest percentile both arms' n support, named in `tail`), each with its repeat interval
    (`_lo`, `_hi`); `rps_overhead_pct` = (1 - rps ratio) x 100 and `tail_overhead_pct` =
    (tail ratio - 1) x 100: what observing costs, in %.
    """
    columns = [
        "arm",
        *GROUP,
        "repeats_on",
        "repeats_off",
        "rps_on",
        "rps_off",
        "rps_ratio",
        "rps_ratio_lo",
        "rps_ratio_hi",
        "rps_overhead_pct",
        "tail",
        "tail_ratio",
        "tail_ratio_lo",
        "tail_ratio_hi",
        "tail_overhead_pct",
    ]
    names = observer_arms(summary) if "arm" in summary else []
    if not names:
        return pd.DataFrame(columns=columns)
    on = aggregate_rows(usable(summary, DEFAULT_ARM)).set_index(list(GROUP))
    records = []
    for arm in names:
        off = aggregate_rows(usable(summary, arm))
        for _, row_off in off.iterrows():
            key = tuple(row_off[k] for k in GROUP)
            if key not in on.index:
                continue
            row_on = on.loc[key]
            rps = ratio_with_spread(row_on, row_off, "rps")
            q, n = common_tail(row_on, row_off)
            tail: Ratio = (math.nan,) * 3  # type: ignore[assignment]
            if q is not None:
                tail = ratio_with_spread(row_on, row_off, f"p{q}_ms")
            records.append(
                {
                    "arm": arm,
                    **dict(zip(GROUP, key, strict=True)),
                    "repeats_on": int(row_on["repeats"]),
                    "repeats_off": int(row_off["repeats"]),
                    "rps_on": float(row_on["rps"]),
                    "rps_off": float(row_off["rps"]),
                    "rps_ratio": rps[0],
                    "rps_ratio_lo": rps[1],
                    "rps_ratio_hi": rps[2],
                    "rps_overhead_pct": (1 - rps[0]) * 100,
                    "tail": _tail_name(q, n),
                    "tail_ratio": tail[0],
                    "tail_ratio_lo": tail[1],
                    "tail_ratio_hi": tail[2],
                    "tail_overhead_pct": (tail[0] - 1) * 100,
                }
            )
    return pd.DataFrame(records, columns=columns)


def _tail_name(q: int | None, n: int | None) -> str:
    if q is None:
        return "n too small" if n is None else f"n too small (n={n:,})"
    return f"p{q}" if q == 99 or n is None else f"p{q} (n={n:,})"
