"""manifest.json: what was run, on what, with which versions and settings, and when."""

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract import MANIFEST_SCHEMA_VERSION
from loadtests.files import write_atomic

if TYPE_CHECKING:
    from contract.cell import CellResult
    from loadtests.context import RunContext

PACKAGES = (
    "fastapi starlette uvicorn uvloop httptools h11 granian hypercorn httpx httpcore httpx2 "
    "httpcore2 aiohttp httpx-aiohttp fastapi-overflow anyio sqlalchemy aiosqlite pydantic "
    "pydantic-settings locust gevent geventhttpclient numpy pandas psutil py-spy"
).split()
REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str | None:
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=30, cwd=REPO, env=env, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_info() -> dict[str, Any]:
    """Commit and whether the working tree had uncommitted changes."""
    status = _run(["git", "status", "--porcelain"])
    return {"commit": _run(["git", "rev-parse", "HEAD"]), "dirty": bool(status)}


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the numbers."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, Any]:
    """CPU model and count, OS, load average."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
        "python": sys.version,
    }


def server_settings(python: str, env: dict[str, str]) -> Any:
    """`python -m servers settings` with the run's environment (the servers' effective defaults)."""
    text = _run([python, "-m", "servers", "settings"], env={**os.environ, **env})
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


def start(
    ctx: "RunContext",
    matrix: dict[str, Any],
    planned: list[str],
    estimate_s: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write manifest.json at the start of a run (a resumed run appends a session).

    `planned` is every cell id of the run, `estimate_s` the estimate of what is left to run;
    `extra` adds top-level sections (the lab's `server_settings`, the probe's `probe`).
    """
    path = ctx.out / "manifest.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    done = {p.parent.name for p in ctx.out.glob("*/cell.json")}
    session = {
        "start": time.time(),
        "end": None,
        "argv": sys.argv,
        "cells_planned": len([c for c in planned if c not in done]),
        "estimate_s": round(estimate_s),
    }
    doc = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "run_id": ctx.out.name,
        "start": previous.get("start", session["start"]),
        "end": None,
        "git": git_info(),
        "versions": versions(),
        "machine": machine(),
        "pinning": ctx.pinning.to_dict(),
        "target": ctx.target,
        "locust_processes": ctx.locust_processes,
        "load_hosts": ctx.load_hosts.to_dict() if ctx.load_hosts is not None else None,
        "matrix": matrix,
        "cells": list(planned),
        **(extra or {}),
        "sessions": [*previous.get("sessions", []), session],
        # Machine speed before the run and after each pass (loadtests/calibrate.py).
        "calibration": previous.get("calibration", []),
    }
    write_atomic(path, json.dumps(doc, indent=2))
    return doc


def load(out: Path) -> dict[str, Any] | None:
    """The run's manifest.json as written so far (None if there is none)."""
    path = out / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def add_calibration(out: Path, entry: dict[str, Any]) -> None:
    """Append one calibration to manifest.json."""
    doc = load(out) or {}
    doc.setdefault("calibration", []).append(entry)
    write_atomic(out / "manifest.json", json.dumps(doc, indent=2))


def finish(
    out: Path, doc: dict[str, Any], results: "list[CellResult]", interrupted: bool = False
) -> None:
    """Record the end of the run (also after Ctrl-C: the session is then `interrupted`)."""
    now = time.time()
    doc["end"] = now
    doc["sessions"][-1].update(
        end=now,
        interrupted=interrupted,
        cells_run=len(results),
        cells_failed=sum(not r.ok for r in results),
        cells_invalid=sum(r.ok and not r.valid for r in results),
        cells_stalled=sum(r.stalled for r in results),
        cells_not_steady=sum(r.metrics.steady is False for r in results),
    )
    write_atomic(out / "manifest.json", json.dumps(doc, indent=2))
