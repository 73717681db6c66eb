"""SQLite vs PostgreSQL (`make bench-pg`): each handler style on each database, driver and pool.

A configuration is database x driver x pool (size + overflow) x variant (and the arm it ran in),
read from the summary's `db`, `db_pool_size` and `db_max_overflow`. Per DB scenario
(contract.DB_SCENARIOS) at its compared load: throughput, p99 (under the sample rule) and
PostgreSQL's CPU over the counted repeats (the repeat statistic, analysis.judge.repeats: median
and min-max), stalls, and the ratio to `def` on the same database and pool. A repeat is counted
only when it is ok, valid, steady, not stalled and had no gap of contract.GAP_NOTE_S without a
completion: a stalled or invalid cell is named, never turned into a speed. Pure transforms: no
I/O.
"""

import math
from collections.abc import Mapping

import pandas as pd

import contract
from analysis.judge.cells import (
    FAILED,
    INVALID,
    NOT_STEADY,
    OK,
    arms,
    column,
    database_of,
)
from analysis.judge.cells import outcomes as cell_outcomes
from analysis.judge.repeats import Repeats, numeric
from analysis.judge.samples import tail_over_repeats, tail_text
from analysis.judge.transform import at_reference_tokens, ratio_with_spread
from analysis.vocabulary import BASELINE, DEFAULT_ARM, variant_words

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
DATABASES: tuple[str, ...] = (SQLITE, POSTGRESQL)
DATABASE_NAMES: dict[str, str] = {SQLITE: "SQLite", POSTGRESQL: "PostgreSQL"}
DRIVERS: tuple[str, ...] = tuple(d.split("+", 1)[1] for d in contract.DB_DRIVERS)
# What a repeat was, most serious first; only OK repeats give speeds.
DEADLOCK = "deadlock"
STALL = "stall"
KINDS: tuple[str, ...] = (FAILED, DEADLOCK, STALL, INVALID, NOT_STEADY)
KIND_WORDS: dict[str, str] = {
    FAILED: "failed",
    DEADLOCK: "deadlocked",
    STALL: "stalled",
    INVALID: "invalid",
    NOT_STEADY: "not steady",
}

COLUMNS: tuple[str, ...] = (
    "scenario",
    "users",
    "database",
    "driver",
    "pool_size",
    "max_overflow",
    "pool",
    "variant",
    "style",
    "arm",
    "label",
    # "arm `x`" or "base" when another configuration has the same label, else "".
    "arm_note",
    "repeats",
    "counted",
    *KINDS,
    "flags",
    "stall_kind",
    "stall_text",
    "evidence",
    "rps",
    "rps_lo",
    "rps_hi",
    "rps_text",
    "p99_ms",
    "p99_text",
    "db_cpu_pct",
    "ratio",
    "ratio_lo",
    "ratio_hi",
    "baseline",
)


def driver_of(db: object) -> str:
    """`asyncpg` from `postgresql+asyncpg`."""
    text = str(db or "").strip().lower()
    return text.split("+", 1)[1] if "+" in text else ""


def pool_text(size: object, overflow: object) -> str:
    """`5+10`, or `?` when not recorded."""
    known = [None if v is None or pd.isna(v) else int(v) for v in (size, overflow)]  # type: ignore[call-overload]
    if known[0] is None:
        return "?"
    return f"{known[0]}+{known[1] if known[1] is not None else '?'}"


def config_label(row: Mapping[str, object]) -> str:
    """`PostgreSQL, asyncpg, pool 40+0, `async def``."""
    name = DATABASE_NAMES.get(str(row["database"]), str(row["database"]))
    return f"{name}, {row['driver']}, pool {row['pool']}, {variant_words(str(row['variant']))}"


def db_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """Closed-loop rows of the DB scenarios whose `db` names a database and driver."""
    if summary.empty or "db" not in summary or "scenario" not in summary:
        return summary.iloc[0:0]
    rows = summary[summary["scenario"].isin(contract.DB_SCENARIOS)]
    rows = rows[pd.to_numeric(column(rows, "offered_rps", None), errors="coerce").isna()]
    db = column(rows, "db", "").astype(str)
    rows = rows[db.map(database_of) != ""]
    if "style" in rows:
        rows = at_reference_tokens(rows)
    return rows


def db_scenarios(summary: pd.DataFrame) -> list[str]:
    """DB scenarios with PostgreSQL cells, in the contract's order: the section's scenarios
    (none: the run measured no DB scenario on PostgreSQL, and the report has no such section)."""
    rows = db_rows(summary)
    if rows.empty:
        return []
    pg = set(rows.loc[rows["db"].map(database_of) == POSTGRESQL, "scenario"])
    return [s for s in contract.DB_SCENARIOS if s in pg]


def db_users(rows: pd.DataFrame, scenario: str) -> int | None:
    """The highest load with cells on both databases, else the highest with PostgreSQL ones."""
    part = rows[rows["scenario"] == scenario]
    dbs = part["db"].map(database_of)
    pg = {int(u) for u in part.loc[dbs == POSTGRESQL, "users"]}
    both = pg & {int(u) for u in part.loc[dbs == SQLITE, "users"]}
    return max(both or pg) if pg else None


def repeat_kinds(rows: pd.DataFrame) -> pd.Series:
    """Each repeat's kind: ok, or failed > deadlock (`stalled`) > stall (a gap of GAP_NOTE_S
    or more without a completion) > invalid > not steady."""
    base = cell_outcomes(rows).replace({contract.STALLED: DEADLOCK})
    gap = numeric(rows, "gap_max_s")
    stall = (gap >= contract.GAP_NOTE_S) & base.isin([OK, INVALID, NOT_STEADY])
    return base.mask(stall, STALL)


def _stall(rows: pd.DataFrame, kinds: pd.Series) -> dict[str, object]:
    n = len(rows)
    share = ""
    for kind in (DEADLOCK, STALL):
        hit = kinds == kind
        if not hit.any():
            continue
        if 1 < n and int(hit.sum()) < n:
            share = f" ({int(hit.sum())} of {n} repeats)"
        gap = float(numeric(rows[hit], "gap_max_s").max())
        text = DEADLOCK if kind == DEADLOCK or math.isnan(gap) else f"{STALL} {gap:.1f} s"
        evidence = [str(e).strip() for e in column(rows[hit], "stall_evidence", "") if str(e)]
        return {
            "stall_kind": kind,
            "stall_text": text + share,
            "evidence": next((e for e in evidence if e and e != "nan"), ""),
        }
    return {"stall_kind": "", "stall_text": "no", "evidence": ""}


def _numbers(rows: pd.DataFrame) -> dict[str, object]:
    """Throughput, p99 (the sample rule's, or the highest percentile the repeats have) and
    PostgreSQL CPU of the counted repeats (the repeat statistic); NaN and `n/a` when none."""
    if rows.empty:
        nan = math.nan
        return {
            **dict.fromkeys(("rps", "rps_lo", "rps_hi", "p99_ms", "db_cpu_pct"), nan),
            "rps_text": "n/a",
            "p99_text": "n/a",
        }
    rps = Repeats.over(rows, "rps")
    tail = tail_over_repeats(rows)
    return {
        "rps": rps.median,
        "rps_lo": rps.lo,
        "rps_hi": rps.hi,
        "rps_text": rps.text(),
        "p99_ms": tail["p99_ms"],
        "p99_text": tail_text(tail)[0],
        "db_cpu_pct": Repeats.over(rows, "db_cpu_pct").median,
    }


def _config(part: pd.DataFrame) -> dict[str, object]:
    kinds = repeat_kinds(part)
    n = len(part)
    counts = {k: int((kinds == k).sum()) for k in KINDS}
    flags = "; ".join(f"{counts[k]} of {n} {KIND_WORDS[k]}" for k in KINDS if counts[k])
    counted = part[kinds == OK]
    return {
        "repeats": n,
        "counted": len(counted),
        **counts,
        "flags": flags,
        **_stall(part, kinds),
        **_numbers(counted),
    }


def _order(record: Mapping[str, object]) -> tuple:
    def rank(value: object, order: tuple[str, ...]) -> int:
        return order.index(str(value)) if str(value) in order else len(order)

    size, overflow = (
        -1 if pd.isna(v) else int(v) for v in (record["pool_size"], record["max_overflow"])
    )  # type: ignore[call-overload]
    return (
        rank(record["database"], DATABASES),
        size,
        overflow,
        rank(record["variant"], contract.VARIANTS),
        rank(record["driver"], DRIVERS),
        str(record["arm"]),
    )


def database_table(summary: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """Per DB scenario (default: db_scenarios) at its compared load, one row per configuration
    (COLUMNS): numbers over the counted repeats, stalls, and the ratio to `def` on the same
    database and pool (with the verdicts' interval: min/max - max/min)."""
    names = db_scenarios(summary) if names is None else names
    rows = db_rows(summary)
    if rows.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    rows = rows.assign(
        _database=rows["db"].map(database_of),
        _driver=rows["db"].map(driver_of),
        _arm=arms(rows),
        _size=pd.to_numeric(column(rows, "db_pool_size", math.nan), errors="coerce"),
        _overflow=pd.to_numeric(column(rows, "db_max_overflow", math.nan), errors="coerce"),
    )
    records: list[dict[str, object]] = []
    keys = ["_database", "_driver", "_size", "_overflow", "variant", "_arm"]
    for scenario in names:
        users = db_users(rows, scenario)
        if users is None:
            continue
        here = rows[(rows["scenario"] == scenario) & (rows["users"] == users)]
        part: list[dict[str, object]] = []
        for key, cells in here.groupby(keys, dropna=False, sort=False):
            database, driver, size, overflow, variant, arm = key
            record: dict[str, object] = {
                "scenario": scenario,
                "users": users,
                "database": str(database),
                "driver": str(driver),
                "pool_size": size,
                "max_overflow": overflow,
                "pool": pool_text(size, overflow),
                "variant": str(variant),
                "style": str(variant),
                "arm": str(arm),
            }
            record["label"] = config_label(record)
            part.append({**record, **_config(cells)})
        part.sort(key=_order)
        _name_the_arm_where_labels_repeat(part)
        for r in part:
            base = baseline(part, r)
            r["baseline"] = base is r
            mid, lo, hi = _ratio(r, base)
            r.update(ratio=mid, ratio_lo=lo, ratio_hi=hi)
        records += part
    return pd.DataFrame(records, columns=list(COLUMNS))


def _name_the_arm_where_labels_repeat(part: list[dict[str, object]]) -> None:
    """Two configurations with the same label (e.g. `def` with the session dependency and with
    the session per statement) are told apart by their arm."""
    counts: dict[object, int] = {}
    for r in part:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    for r in part:
        r["arm_note"] = ""
        if counts[r["label"]] > 1:
            r["arm_note"] = "base" if r["arm"] == DEFAULT_ARM else f"arm `{r['arm']}`"
            r["label"] = f"{r['label']}, {r['arm_note']}"


def baseline(part: list[dict[str, object]], r: Mapping[str, object]) -> dict[str, object] | None:
    """The `def` row on the same database and pool as `r`: one with a speed first (of its arm,
    the default arm, then any: a `def` fix arm is the baseline when `def` as written stalls),
    else its arm's or the default arm's."""
    same = [
        b
        for b in part
        if b["variant"] == BASELINE and b["database"] == r["database"] and b["pool"] == r["pool"]
    ]
    with_speed = [b for b in same if not pd.isna(b.get("rps"))]
    for pool in (with_speed, same):
        for want in (r["arm"], DEFAULT_ARM):
            hit = next((b for b in pool if b["arm"] == want), None)
            if hit is not None:
                return hit
        if pool is with_speed and with_speed:
            return with_speed[0]
    return same[0] if same else None


def spread(record: Mapping[str, object]) -> pd.Series:
    """A row's throughput with its spread, as ratio_with_spread reads it."""
    return pd.Series({k: record[k] for k in ("rps", "rps_lo", "rps_hi")}, dtype=float)


def _ratio(r: Mapping[str, object], base: Mapping[str, object] | None) -> tuple[float, ...]:
    if base is None:
        return math.nan, math.nan, math.nan
    return ratio_with_spread(spread(r), spread(base), "rps")
