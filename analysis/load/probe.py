"""Reading a probe run (`sync-async-lab probe`): the inventory, the plan, each cell and its loop
sampler's holds, typed. Files only; the findings are analysis.judge.probe's.

A probe run is an ordinary run folder (analysis.load.run reads its summary.csv like any other)
with, beside it, `routes.json` (the app's routes, styles and OpenAPI document), `probe.json` (the
plan and the smoke answers) and, in every cell, `blocking.json`: the sampler's episodes and
holds (results/README.md, "Probe runs").
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import contract
from analysis.load.run import RunFormatError
from contract.cell import CellResult

INVENTORY_FILE = "routes.json"
PLAN_FILE = "probe.json"
BLOCKING_FILE = "blocking.json"
# The as-written app: every probe cell's variant; an arm names what it changes.
APP = "app"


def is_probe_run(path: Path) -> bool:
    """Whether a run folder was made by `sync-async-lab probe`."""
    return (path / INVENTORY_FILE).is_file() and (path / PLAN_FILE).is_file()


@dataclass(frozen=True)
class Held:
    """The loop held at one site in one cell's window: each call's time, ms."""

    site: str
    call: str
    route: str
    # In the app's own code (False: a library frame was innermost, no app frame on the stack).
    user: bool
    held_ms: tuple[float, ...]
    # The loop thread's CPU time in each of those calls, ms (empty where it was not measured).
    cpu_ms: tuple[float, ...] = ()
    # The call under the app's line is a coroutine it awaits: the loop was held inside an async
    # library, between two of its awaits (probe/watch.py `is_awaited`).
    awaited: bool = False

    @property
    def cpu_share(self) -> float | None:
        """The share of the held time the loop thread spent on a core (None: not measured):
        near 1, the call computed; near 0, it waited (a socket, a sleep, a lock)."""
        if not self.cpu_ms or len(self.cpu_ms) != len(self.held_ms) or not sum(self.held_ms):
            return None
        return min(1.0, sum(self.cpu_ms) / sum(self.held_ms))

    @property
    def count(self) -> int:
        """Calls that held the loop past the threshold."""
        return len(self.held_ms)

    def q(self, p: float) -> float:
        """An exact percentile of the time held, ms (linear between samples)."""
        if not self.held_ms:
            return math.nan
        return float(pd.Series(self.held_ms).quantile(p / 100))


@dataclass(frozen=True)
class ProbeCell:
    """One cell of a probe run: its typed record and what held the loop in its window."""

    result: CellResult
    route: str
    # "" (the app as written), "flip", "maxconc"; a token count is `tokens` with arm "".
    arm: str
    tokens: int
    held: tuple[Held, ...] = ()

    @property
    def cell_id(self) -> str:
        """The cell's id."""
        return self.result.cell_id

    @property
    def users(self) -> int:
        """Closed-loop users (the connection cap of a rate cell)."""
        return self.result.users

    @property
    def rate(self) -> float | None:
        """The offered rate of a capacity-search cell; None in a closed loop."""
        return self.result.offered_rps

    @property
    def token_arm(self) -> bool:
        """Whether the cell ran its own thread-token count (`__t<n>` in its id)."""
        return "__t" in self.cell_id

    @property
    def as_written(self) -> bool:
        """A closed-loop cell of the app as written: no arm, the app's own tokens."""
        return not self.arm and not self.token_arm and self.rate is None

    @property
    def counted(self) -> bool:
        """Numbers that describe the server: ok, valid, steady, not stalled."""
        r = self.result
        return r.ok and r.valid and not r.stalled and r.metrics.steady is not False

    @property
    def load_side_only(self) -> bool:
        """Invalid only because the load generator saturated: its CPU per request counts."""
        r = self.result
        return r.ok and not r.valid and not r.stalled and contract.load_side_only(r.invalid_reason)

    @property
    def rps(self) -> float:
        """Throughput: ok requests that started in the window, per second."""
        return float(self.result.metrics.rps or 0.0)

    def metric(self, name: str) -> Any:
        """A metric of the cell by name (`contract.cell.CellMetrics`, e.g. `probe_p50_ms`)."""
        m = self.result.metrics
        if name not in type(m).model_fields:
            raise KeyError(f"no metric {name!r} in contract.cell.CellMetrics")
        return getattr(m, name)

    def user_held(self) -> list[Held]:
        """What held the loop in the app's own code, most time first."""
        return [h for h in self.held if h.user]


@dataclass(frozen=True)
class ProbeRun:
    """A probe run's own files, typed."""

    path: Path
    inventory: dict[str, Any]
    plan: dict[str, Any]
    cells: tuple[ProbeCell, ...]
    capacity: pd.DataFrame

    @property
    def app(self) -> str:
        """`PKG.MODULE:APP`, as the user named it."""
        return str(self.inventory.get("app", ""))

    def routes(self) -> list[dict[str, Any]]:
        """Every route of the inventory, in its order."""
        return list(self.inventory.get("routes", []))

    def route_plan(self, route_id: str) -> dict[str, Any]:
        """The plan's entry for a route (its requests, why not probed, arms left out)."""
        return next((r for r in self.plan.get("routes", []) if r["id"] == route_id), {})

    def cells_of(self, route_id: str) -> list[ProbeCell]:
        """The cells of one route, in id order."""
        return [c for c in self.cells if c.route == route_id]


def held_in_window(
    blocking: dict[str, Any], start: float, end: float, route: str
) -> tuple[Held, ...]:
    """The calls that held the loop (the sampler's holds) begun in a cell's window, by site.

    An episode still under way when the file was last written (a loop held for good) counts
    as one call. A call shorter than the threshold is a slice of a longer episode (the framework
    between two of the app's calls), not a block of its own. A hold of pure-Python code (no
    call under it) in which the loop thread used less than half the time in CPU is the
    machine's doing, not the app's, and is left out.
    """
    sites = blocking.get("sites", [])
    ongoing = blocking.get("ongoing")
    rows = [*blocking.get("holds", []), *([ongoing] if ongoing else [])]
    threshold = float(blocking.get("threshold_ms", 0.0))
    grouped: dict[int, list[float]] = {}
    cpus: dict[int, list[float]] = {}
    for began, held_ms, index, *cpu in rows:
        if not start <= began < end or held_ms < threshold:
            continue
        if not sites[index].get("call") and cpu and cpu[0] is not None and cpu[0] < held_ms / 2:
            # Pure-Python code "holding" the loop without the CPU to do it: the loop thread was
            # waiting for a core (a busy machine preempted it), not running the app.
            continue
        grouped.setdefault(int(index), []).append(float(held_ms))
        if cpu and cpu[0] is not None:
            cpus.setdefault(int(index), []).append(float(cpu[0]))
    out = []
    for index, values in grouped.items():
        site = sites[index]
        user = not site.get("library")
        where = f"{site['file']}:{site['line']}" if user else site["library"]
        out.append(
            Held(
                where,
                site.get("call", ""),
                site.get("route") or route,
                user,
                tuple(values),
                tuple(cpus.get(index, ())),
                bool(site.get("awaited", False)),
            )
        )
    return tuple(sorted(out, key=lambda h: -sum(h.held_ms)))


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFormatError(path, f"cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise RunFormatError(path, "is not a JSON object")
    return data


def load_probe(path: Path, route: str | None = None) -> ProbeRun:
    """Read a probe run's own files (with `route`, only that route's cells: a cell's folder
    starts with its route id); RunFormatError naming the file when one is bad."""
    inventory = _json(path / INVENTORY_FILE)
    plan = _json(path / PLAN_FILE)
    cells = []
    for cell_json in sorted(path.glob(f"{route}__*/cell.json" if route else "*/cell.json")):
        try:
            result = CellResult.load(cell_json)
        except ValueError as exc:
            raise RunFormatError(cell_json, str(exc)) from None
        facts = result.probe or {}
        if not facts.get("route"):
            continue
        if route and facts["route"] != route:
            continue  # another route whose id begins with this one's (`get-items__...`)
        held: tuple[Held, ...] = ()
        blocking = cell_json.parent / BLOCKING_FILE
        if blocking.is_file() and result.window_start is not None and result.window_end:
            held = held_in_window(
                _json(blocking), result.window_start, result.window_end, facts["route"]
            )
        tokens = int(result.settings.get("threadpool_tokens") or 40)
        cells.append(ProbeCell(result, facts["route"], facts.get("arm", ""), tokens, held))
    capacity_file = path / "capacity.csv"
    capacity = pd.read_csv(capacity_file) if capacity_file.is_file() else pd.DataFrame()
    return ProbeRun(path, inventory, plan, tuple(cells), capacity)
