"""Load a run folder (summary.csv, manifest.json, per-cell requests/metrics.csv) as typed data."""

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.load.completeness import Completeness, completeness
from analysis.load.derive import derive
from analysis.load.schema import (
    BLANK_TRUE,
    CAPACITY_COLUMNS,
    CELL_KEY,
    METRICS_COLUMNS,
    OFFERED,
    REQUESTS_COLUMNS,
    SERVER_KEY,
    STATUSES,
    SUMMARY_COLUMNS,
    SWEEP_KEY,
    Column,
)
from analysis.vocabulary import style_of
from contract import (
    CALIBRATION_KEYS,
    CAPACITY_BOUNDS,
    DEFAULT_SERVER,
    MANIFEST_SCHEMA_VERSION,
    SERVERS,
)
from contract.cell import CellResult
from contract.slo import parse_slo

SUMMARY_FILE = "summary.csv"
MANIFEST_FILE = "manifest.json"
REQUESTS_FILE = "requests.csv"
METRICS_FILE = "metrics.csv"
CELL_FILE = "cell.json"
CAPACITY_FILE = "capacity.csv"

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_SHOWN_BAD_ROWS = 3


class RunFormatError(Exception):
    """A run folder's file is missing or does not match the results/README.md contract."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Run:
    """One loaded run: its folder, its manifest and one typed row per cell x repeat.

    `summary` holds the closed-loop cells only, so every closed-loop analysis sees what it saw
    before rate mode existed; `rates` the rate (open-loop) cells, `offered_rps` set; `capacity`
    capacity.csv's SLO searches (no rows when the run had none).
    """

    path: Path
    manifest: dict[str, Any]
    summary: pd.DataFrame
    missing_columns: tuple[str, ...] = field(default=())
    # How absent columns were filled from present ones (load.derive), one sentence each.
    derived: tuple[str, ...] = field(default=())
    rates: pd.DataFrame = field(default_factory=pd.DataFrame)
    capacity: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Planned cells that are not in summary.csv, and cells measured but not in it.
    completeness: Completeness = field(default_factory=Completeness)
    # The ASGI server `summary` and `rates` hold (summary `server`): when a run spans several,
    # every analysis but the servers section reads this one's cells only (contract's default
    # when the run has it), so no style's repeats ever mix servers. "" when none is named.
    server: str = ""
    # The closed-loop rows of every server (the same rows as `summary` in a one-server run):
    # what the servers section (analysis.sections.servers) compares.
    every_server: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def name(self) -> str:
        """The run id: the folder's name."""
        return self.path.resolve().name

    @property
    def servers(self) -> list[str]:
        """The ASGI servers of the run's closed-loop cells, in contract.SERVERS order."""
        return servers_of(self.every_server)


def load_run(path: Path | str) -> Run:
    """Load `path`'s manifest and summary; raise RunFormatError naming the file on any problem."""
    path = Path(path)
    if not path.is_dir():
        raise RunFormatError(path, "not a run folder (no such directory)")
    manifest = load_manifest(path / MANIFEST_FILE)
    summary, missing = load_summary(path / SUMMARY_FILE)
    summary, derived = derive(summary, missing, target=bool(manifest.get("target")))
    server = main_server(summary)
    closed, rates = split_rates(summary)
    capacity = load_capacity(path / CAPACITY_FILE)
    return Run(
        path,
        manifest,
        of_server(closed, server),
        missing_columns=missing,
        derived=derived,
        rates=of_server(rates, server),
        capacity=capacity,
        completeness=completeness(
            path, manifest.get("cells", []), summary["cell_id"], manifest.get("sessions", [])
        ),
        server=server,
        every_server=closed,
    )


def servers_of(frame: pd.DataFrame) -> list[str]:
    """The ASGI servers named in a frame's `server` column, contract.SERVERS first, in order."""
    if "server" not in frame or frame.empty:
        return []
    present = {str(s).strip() for s in frame["server"] if str(s).strip() not in ("", "nan")}
    return [s for s in SERVERS if s in present] + sorted(present - set(SERVERS))


def main_server(summary: pd.DataFrame) -> str:
    """The server a run's analysis reads: the contract's default when the run has it, else the
    first it names ("" when it names none, e.g. a `--target` run)."""
    named = servers_of(summary)
    if DEFAULT_SERVER in named:
        return DEFAULT_SERVER
    return named[0] if named else ""


def of_server(frame: pd.DataFrame, server: str) -> pd.DataFrame:
    """The rows of one server (every row when `server` is "": no server is named)."""
    if not server or frame.empty:
        return frame
    return frame[frame["server"].astype(str).str.strip() == server].reset_index(drop=True)


def add_style(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with a `style` column from `variant` and `client`
    (analysis.vocabulary.style_of)."""
    out = frame.copy()
    out["style"] = [style_of(v, c) for v, c in zip(out["variant"], out["client"], strict=True)]
    return out


def split_rates(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(closed-loop rows, rate rows): a row with `offered_rps` set is a rate (open-loop) cell."""
    rate = summary[OFFERED].notna()
    return summary[~rate].reset_index(drop=True), summary[rate].reset_index(drop=True)


def load_capacity(path: Path) -> pd.DataFrame:
    """capacity.csv typed (contract.CAPACITY_TYPES) plus `style`; no rows when it is absent."""
    if not path.exists():
        return add_style(
            _typed(_no_rows(CAPACITY_COLUMNS), CAPACITY_COLUMNS, path, allow_empty=True)[0]
        )
    raw = _read_csv_text(path, allow_empty=True)
    frame, _ = _typed(raw, CAPACITY_COLUMNS, path, allow_empty=True)
    frame = frame[[c.name for c in CAPACITY_COLUMNS]]
    bad = ~frame["bound"].isin(CAPACITY_BOUNDS)
    if bad.any():
        _fail(
            path,
            _column(CAPACITY_COLUMNS, "bound"),
            bad,
            frame["bound"],
            f"is not one of {list(CAPACITY_BOUNDS)}",
        )
    for name in ("repeat", "cells"):
        low = frame[name] < 1
        if low.any():
            _fail(path, _column(CAPACITY_COLUMNS, name), low, raw[name], "is below 1")
    # Only a search whose lowest rate failed has no capacity; only one that never failed no limit.
    no_capacity = frame["capacity_rps"].isna() != (frame["bound"] == "below_lowest")
    if no_capacity.any():
        _fail(
            path,
            _column(CAPACITY_COLUMNS, "capacity_rps"),
            no_capacity,
            raw["capacity_rps"],
            "does not match `bound` (empty exactly when `bound` is below_lowest)",
        )
    no_limit = frame["limit_rps"].isna() & (frame["bound"] != "above_highest")
    if no_limit.any():
        _fail(
            path,
            _column(CAPACITY_COLUMNS, "limit_rps"),
            no_limit,
            raw["limit_rps"],
            "is empty while `bound` is not above_highest",
        )
    for i, text in frame["slo"].items():
        try:
            parse_slo(str(text))
        except ValueError as exc:
            raise RunFormatError(path, f"column `slo` at line {int(i) + 2}: {exc}") from None
    return add_style(frame)


def _no_rows(columns: Sequence[Column]) -> pd.DataFrame:
    return pd.DataFrame({c.name: pd.Series(dtype=str) for c in columns})


def _column(columns: Sequence[Column], name: str) -> Column:
    return next(c for c in columns if c.name == name)


def load_manifest(path: Path) -> dict[str, Any]:
    """manifest.json as a dict; RunFormatError if it is not a JSON object, the sections read must
    be objects, or its `schema_version` is one this analysis does not read (a file without one is
    version 1; contract.MANIFEST_SCHEMA_VERSION is the newest)."""
    data = _json_object(path)
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RunFormatError(path, f"`schema_version` must be a positive integer, got {version!r}")
    if version > MANIFEST_SCHEMA_VERSION:
        raise RunFormatError(
            path,
            f"schema_version {version} is newer than this analysis reads (1 to "
            f"{MANIFEST_SCHEMA_VERSION}): written by a newer lab; update the analysis to read it",
        )
    for key in ("versions", "machine", "settings"):
        if key in data and not isinstance(data[key], dict):
            raise RunFormatError(path, f"`{key}` must be an object, got {type(data[key]).__name__}")
    if "calibration" in data:
        _check_calibration(path, data["calibration"])
    cells = data.get("cells", [])
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        raise RunFormatError(path, "`cells` must be a list of cell ids (strings)")
    return data


def _json_object(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFormatError(path, "file is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFormatError(path, f"cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFormatError(
            path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise RunFormatError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def load_cell(path: Path) -> CellResult:
    """One cell.json as the contract's typed record (contract.cell.CellResult, every schema
    version it reads); RunFormatError naming the file and the field on any problem."""
    if not path.is_file():
        raise RunFormatError(path, "file is missing")
    try:
        return CellResult.load(path)
    except ValueError as exc:
        problem = str(exc)
        for prefix in (f"{path}: ", f"{path}:"):
            problem = problem.removeprefix(prefix)
        raise RunFormatError(path, problem) from None


def _check_calibration(path: Path, calibration: object) -> None:
    # contract.CALIBRATION_KEYS: a list of {"label", "ts", <figure>...}, taken during the run; an
    # entry whose measurement failed carries an `error` text instead of its figures.
    if not isinstance(calibration, list) or not all(isinstance(x, dict) for x in calibration):
        raise RunFormatError(path, "`calibration` must be a list of objects")
    for i, entry in enumerate(calibration):
        for key in ("ts", *CALIBRATION_KEYS):
            value = entry.get(key)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number and value is not None:
                raise RunFormatError(
                    path, f"`calibration[{i}].{key}` must be a number, got {value!r}"
                )


def load_summary(path: Path) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """summary.csv as typed columns plus `style`, and the contract columns it lacked."""
    raw = _read_csv_text(path)
    frame, missing = _typed(raw, SUMMARY_COLUMNS, path)
    bad_status = sorted(set(frame["status"]) - STATUSES)
    if bad_status:
        raise RunFormatError(path, f"column `status`: unknown values {bad_status} (ok, failed)")
    for name in ("users", "repeat"):
        if (frame[name] < 1).any():
            raise RunFormatError(path, f"column `{name}`: values must be >= 1")
    if (frame[OFFERED] <= 0).any():
        raise RunFormatError(path, f"column `{OFFERED}`: a rate cell's offered rate must be > 0")
    # A token sweep repeats a cell at several token counts, a server sweep under several
    # servers: those rows are distinct cells. A rate cell is one cell per offered rate; `users`
    # there is only its connection cap.
    dup = frame.duplicated([*CELL_KEY, SWEEP_KEY, SERVER_KEY, OFFERED], keep=False)
    if dup.any():
        cells = ", ".join(frame.loc[dup, "cell_id"].head(_SHOWN_BAD_ROWS))
        raise RunFormatError(path, f"the same cell x repeat appears twice: {cells}")
    # A failed cell's numbers describe nothing, whatever its `valid` column says.
    frame.loc[frame["status"] != "ok", "valid"] = False
    return add_style(frame), missing


def load_requests(path: Path, kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """One cell's requests.csv (kind, latency_ms, ok), optionally only the rows of `kinds`."""
    wanted = [c.name for c in REQUESTS_COLUMNS]
    try:
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            usecols=lambda c: c in wanted,
            engine="c",
        )
    except FileNotFoundError:
        raise RunFormatError(path, "file is missing") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunFormatError(path, f"not a readable CSV ({_first_line(exc)})") from None
    if kinds is not None:
        raw = raw[raw["kind"].isin(kinds)] if "kind" in raw else raw
    # The index still counts file lines, so a type error names the right line.
    frame, _ = _typed(raw, REQUESTS_COLUMNS, path, allow_empty=True)
    return frame.reset_index(drop=True)


def load_metrics(path: Path) -> pd.DataFrame:
    """One cell's metrics.csv (ts, metric, labels, value), sorted by time; may have no rows."""
    raw = _read_csv_text(path, allow_empty=True)
    # No scrape succeeded (a server blocked throughout) is a fact to show, not a format error.
    frame, _ = _typed(raw, METRICS_COLUMNS, path, allow_empty=True)
    frame = frame[[c.name for c in METRICS_COLUMNS]]
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def load_window(path: Path) -> tuple[float, float] | None:
    """A cell.json's measured window (start, end) in epoch seconds; None if not recorded."""
    if not path.exists():
        return None
    cell = load_cell(path)
    start, end = cell.window_start, cell.window_end
    return (start, end) if start is not None and end is not None and end > start else None


def metric_series(metrics: pd.DataFrame, metric: str, labels: str = "") -> pd.Series:
    """One metric's values indexed by `ts`; `labels` as written in the file (`k=v;k=v`)."""
    rows = metrics[(metrics["metric"] == metric) & (metrics["labels"] == labels)]
    return pd.Series(rows["value"].to_numpy(), index=rows["ts"].to_numpy(), name=metric)


def _read_csv_text(path: Path, allow_empty: bool = False) -> pd.DataFrame:
    # Everything is read as text first so each column gets its own, clearly worded type check.
    if path.is_file():
        _check_rows(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, engine="c")
    except FileNotFoundError:
        raise RunFormatError(path, "file is missing") from None
    except pd.errors.EmptyDataError:
        raise RunFormatError(path, "file is empty (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunFormatError(path, f"not a readable CSV ({_first_line(exc)})") from None
    except OSError as exc:
        raise RunFormatError(path, f"cannot be read ({exc})") from None
    if raw.empty and not allow_empty:
        raise RunFormatError(path, "has a header but no rows")
    return raw


TRUNCATED = "a row cut short: was the file truncated?"


def _check_rows(path: Path) -> None:
    # pandas fills a row with too few fields with empty values without a word: a file cut
    # mid-row (a killed writer, a full disk) would be read as a row of blanks. Every row must
    # have the header's fields, and the file must end with a line break, as every writer's does.
    line = 1
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, strict=True)
            header = next(reader, [])
            line = reader.line_num + 1
            for row in reader:
                if row and len(row) != len(header):
                    short = f" ({TRUNCATED})" if len(row) < len(header) else ""
                    raise RunFormatError(
                        path,
                        f"not a readable CSV: line {line} has {len(row)} fields where the header "
                        f"has {len(header)}{short}",
                    )
                line = reader.line_num + 1
    except csv.Error as exc:
        problem = f"not a readable CSV: line {line}: {exc} ({TRUNCATED})"
        raise RunFormatError(path, problem) from None
    except (OSError, UnicodeDecodeError):
        return  # pandas reads it next and says what is wrong
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 1))
        last = f.read(1)
    if size and last not in (b"\n", b"\r"):
        raise RunFormatError(
            path,
            f"not a readable CSV: line {line - 1}, the last, does not end with a line break "
            f"({TRUNCATED})",
        )


def _typed(
    raw: pd.DataFrame, columns: Sequence[Column], path: Path, *, allow_empty: bool = False
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    absent_required = [c.name for c in columns if c.required and c.name not in raw.columns]
    if absent_required:
        raise RunFormatError(
            path,
            f"missing required column(s) {absent_required}; "
            f"available columns: {sorted(map(str, raw.columns))}",
        )
    if raw.empty and not allow_empty:
        raise RunFormatError(path, "has a header but no rows")
    out = raw.copy()
    missing: list[str] = []
    for col in columns:
        if col.name not in out.columns:
            if col.contract:
                missing.append(col.name)
            out[col.name] = _empty(col, len(out))
            continue
        out[col.name] = _convert(out[col.name].astype(str).str.strip(), col, path)
    return out, tuple(missing)


def _empty(col: Column, n: int) -> pd.Series:
    if col.kind == "str":
        return pd.Series([""] * n, dtype=object)
    if col.kind == "int":
        return pd.Series([pd.NA] * n, dtype="Int64")
    if col.kind == "bool":
        return pd.Series([col.name in BLANK_TRUE] * n, dtype=bool)
    return pd.Series(np.full(n, np.nan), dtype=float)


def _convert(text: pd.Series, col: Column, path: Path) -> pd.Series:
    blank = text == ""
    if not col.nullable and blank.any():
        _fail(path, col, blank, text, "is empty")
    if col.kind == "str":
        return text.astype(object)
    if col.kind == "bool":
        lowered = text.str.lower()
        bad = ~(lowered.isin(_TRUE | _FALSE) | blank)
        if bad.any():
            _fail(path, col, bad, text, "is not a boolean (True/False)")
        if col.name in BLANK_TRUE:
            return (lowered.isin(_TRUE) | blank).astype(bool)
        return lowered.isin(_TRUE).astype(bool)
    numbers = pd.to_numeric(text.where(~blank, None), errors="coerce")
    bad = numbers.isna() & ~blank & (text.str.lower() != "nan")
    if bad.any():
        _fail(path, col, bad, text, f"is not a{'n integer' if col.kind == 'int' else ' number'}")
    if col.kind == "float":
        return numbers.astype(float)
    fractional = numbers.notna() & (numbers != numbers.round())
    if fractional.any():
        _fail(path, col, fractional, text, "is not an integer")
    return numbers.astype("Int64") if col.nullable else numbers.astype("int64")


def _fail(path: Path, col: Column, bad: pd.Series, text: pd.Series, what: str) -> None:
    # Line numbers count the header as line 1, as an editor shows them.
    rows = [f"line {i + 2}: {text[i]!r}" for i in bad[bad].index[:_SHOWN_BAD_ROWS]]
    more = f" (and {int(bad.sum()) - len(rows)} more)" if bad.sum() > len(rows) else ""
    where = "; ".join(rows)
    raise RunFormatError(path, f"column `{col.name}` ({col.kind}) {what} at {where}{more}")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
