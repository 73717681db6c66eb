"""What an older run's summary lacks, derived from what it has; each derivation is named."""

import numpy as np
import pandas as pd

import contract


def derive(frame: pd.DataFrame, missing: tuple[str, ...]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Fill absent contract columns that other columns determine; return how, one note each."""
    out = frame.copy()
    notes: list[str] = []
    absent = set(missing)
    ok = out["status"] == "ok"
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


def _evidence(row: pd.Series) -> str:
    parts = ["no request finished in the window"]
    cut = row.get("cut_off")
    if cut is not None and not pd.isna(cut):
        parts.append(f"{int(cut)} still in flight at the end")
    cpu = row.get("server_cpu_pct")
    if cpu is not None and not pd.isna(cpu) and np.isfinite(cpu):
        parts.append(f"server CPU {cpu:.1f}%")
    return "; ".join(parts)
