"""What an older run's summary lacks, derived from what it has; each derivation is named."""

import math

import numpy as np
import pandas as pd

import contract

# The columns a summary written under the sample rule has (contract.PERCENTILE_RULE): the exact
# value of every percentile. A summary with none of them predates the rule.
RULED: frozenset[str] = frozenset(contract.raw_column(c) for c in contract.PERCENTILE_RULE)


def derive(
    frame: pd.DataFrame, missing: tuple[str, ...], *, target: bool = False
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Fill absent contract columns that other columns determine; return how, one note each.

    `target`: the run measured a server the lab did not start (`--target`), whose ASGI server
    it cannot name; its empty `server` stays empty.
    """
    out = frame.copy()
    notes: list[str] = []
    absent = set(missing)
    ok = out["status"] == "ok"
    if not target and "server" in out:
        # Every cell before the column ran under `python -m servers` as it was then.
        blank = out["server"].astype(str).str.strip().isin(("", "nan"))
        if blank.any():
            out["server"] = out["server"].astype(object)
            out.loc[blank, "server"] = contract.DEFAULT_SERVER
            notes.append(
                f"`server` = `{contract.DEFAULT_SERVER}` where empty (the cells predate the "
                "column: the lab started every server with uvicorn, uvloop and httptools)"
            )
    if "ok" in absent and not {"requests", "failures"} & absent:
        # Older runs counted completed requests (failures included) and left in-flight ones out.
        requests = out["requests"].astype("Float64")
        out["ok"] = (requests - out["failures"].astype("Float64").fillna(0)).astype("Int64")
        notes.append("`ok` = `requests` - `failures` (the run counted completed requests only)")
    if "cpu_ms_per_req" in absent and not {"server_cpu_pct", "rps"} & absent:
        # % of one core = CPU ms per second / 10; per successful request: divide by requests/s.
        rps = out["rps"].where(out["rps"] > 0)
        out["cpu_ms_per_req"] = out["server_cpu_pct"] * 10.0 / rps
        notes.append(
            "`cpu_ms_per_req` = `server_cpu_pct` x 10 / `rps` (server CPU ms per successful "
            "request)"
        )
    if "stalled" in absent and "rps" not in absent:
        failures = out["failures"].astype("Float64").fillna(0) if "failures" in out else 0
        stuck = ok & (out["rps"] == 0) & (failures == 0)
        out["stalled"] = stuck.astype(bool)
        out["stall_evidence"] = out["stall_evidence"].astype(object)
        out.loc[stuck, "stall_evidence"] = [_evidence(row) for _, row in out[stuck].iterrows()]
        notes.append(
            "`stalled` = no request finished in the window and none failed (the run predates "
            "stall detection)"
        )
    if RULED <= absent:
        # A summary written before the sample rule: the contract's rule, applied as the
        # orchestrator applies it now (contract.apply_sample_rule), not a rule of the analysis.
        out = _apply_sample_rule(out, ok)
        notes.append(
            "the sample rule applied to the percentiles (`contract.apply_sample_rule`: the run "
            "predates it): one its count does not support is left empty, its value kept in "
            "`<column>_raw`; `latency_n` = `ok` + `censored`"
        )
    elif "latency_n" in absent and "ok" not in absent:
        censored = out["censored"].astype("Float64").fillna(0) if "censored" in out else 0
        out["latency_n"] = (out["ok"].astype("Float64") + censored).astype("Int64")
        notes.append("`latency_n` = `ok` + `censored` (the latency samples)")
    if "steady" in absent and "little_ratio" not in absent:
        # A run that wrote the ratio but not the flag: the contract's tolerance decides.
        within = (out["little_ratio"] - 1).abs() <= contract.LITTLE_TOLERANCE
        out["steady"] = within | out["little_ratio"].isna()
        notes.append("`steady` = `little_ratio` within the contract's tolerance of 1")
    if "steady" in out:
        # Written by the orchestrator (summary.steadiness); empty = not checkable, not a flag.
        out["steady"] = out["steady"].astype("boolean").fillna(True).astype(bool)
    if {"steady", "little_ratio"} <= absent:
        notes.append("steadiness (Little's law) not checked: `steady` and `little_ratio` absent")
    return out, tuple(notes)


def _apply_sample_rule(frame: pd.DataFrame, ok: pd.Series) -> pd.DataFrame:
    columns = ["ok", "censored", *RULED, *contract.PERCENTILE_RULE]
    columns += sorted({count for _, count in contract.PERCENTILE_RULE.values()})
    columns = [c for c in dict.fromkeys(columns) if c in frame]
    out = frame.copy()
    for i in out.index[ok.to_numpy(dtype=bool)]:
        row = {c: None if pd.isna(out.at[i, c]) else out.at[i, c] for c in columns}
        for column, value in contract.apply_sample_rule(row).items():
            if column in out:
                out.at[i, column] = math.nan if value is None else value
    if "latency_n" in out:
        out["latency_n"] = pd.to_numeric(out["latency_n"], errors="coerce").astype("Int64")
    return out


def _evidence(row: pd.Series) -> str:
    parts = ["no request finished in the window"]
    cut = row.get("cut_off")
    if cut is not None and not pd.isna(cut):
        parts.append(f"{int(cut)} still in flight at the end")
    cpu = row.get("server_cpu_pct")
    if cpu is not None and not pd.isna(cpu) and np.isfinite(cpu):
        parts.append(f"server CPU {cpu:.1f}%")
    return "; ".join(parts)
