"""A service-level objective and how one summary row is checked against it (`check`).

Written once: the orchestrator checks rate cells with it while it searches for a capacity,
and the analysis checks the same rows with it when it draws the SLO on the hockey stick.
("Judge" is the analysis's word for deciding a verdict between styles; this is not that.)

`p99=500ms,errors=1%` means: the 99th percentile of latency (from each request's intended start,
censored requests at their age) is at most 500 ms, and errors plus timeouts are at most 1 % of
the requests that started in the window. A stalled cell never meets an SLO; an invalid one (the
load side, not the server, limited it) cannot be judged.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import min_samples

PASS = "pass"
FAIL = "fail"
UNJUDGED = "unjudged"

_PART = re.compile(r"^\s*(p\d{1,2}(?:\.\d+)?|errors)\s*=\s*([\d.]+)\s*(ms|s|%)?\s*$")


@dataclass(frozen=True)
class Slo:
    """Latency percentile `quantile` at most `latency_ms`, and at most `errors_pct` failures."""

    latency_ms: float = 500.0
    errors_pct: float = 1.0
    quantile: float = 99.0

    @property
    def column(self) -> str:
        """The summary column holding the percentile, e.g. `p99_ms`."""
        return f"p{self.quantile:g}_ms"

    def text(self) -> str:
        """The SLO as `--slo` takes it, e.g. `p99=500ms,errors=1%`."""
        return f"p{self.quantile:g}={self.latency_ms:g}ms,errors={self.errors_pct:g}%"


def parse_slo(text: str) -> Slo:
    """`p99=500ms,errors=1%` (either part may be left out; `500ms`, `0.5s`); ValueError if bad."""
    values: dict[str, float] = {}
    for part in filter(str.strip, text.split(",")):
        match = _PART.match(part)
        if not match:
            raise ValueError(f"SLO part {part!r}: write p99=500ms or errors=1%")
        key, number, unit = match.group(1), float(match.group(2)), match.group(3)
        if key == "errors":
            if unit not in (None, "%") or not 0 <= number <= 100:
                raise ValueError(f"SLO part {part!r}: errors is a percentage from 0 to 100")
            values["errors_pct"] = number
        else:
            if unit == "%":
                raise ValueError(f"SLO part {part!r}: a latency takes ms or s")
            quantile = float(key[1:])
            if quantile not in (50, 90, 95, 99):
                raise ValueError(f"SLO part {part!r}: the summary holds p50, p90, p95 and p99")
            values["quantile"] = quantile
            values["latency_ms"] = number * 1000 if unit == "s" else number
    if not values:
        raise ValueError("empty SLO: write e.g. p99=500ms,errors=1%")
    return Slo(**values)


@dataclass(frozen=True)
class SloCheck:
    """One row against an SLO: pass, fail or unjudged, and why, in the row's own numbers."""

    status: str
    why: str
    # What the latency part was checked on: the percentile, or the maximum when there were too
    # few samples to print the percentile (contract.min_samples): every sample then counts.
    basis: str = ""


def _number(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1")


def check(row: Mapping[str, Any], slo: Slo) -> SloCheck:
    """Check one summary row (a dict of summary.csv values, as text or typed) against `slo`."""
    if str(row.get("status", "ok")) != "ok":
        return SloCheck(UNJUDGED, f"cell failed: {row.get('reason') or 'no numbers'}")
    if _truthy(row.get("stalled")):
        return SloCheck(FAIL, "stalled")
    if not _truthy(row.get("valid")):
        return SloCheck(UNJUDGED, f"invalid: {row.get('invalid_reason') or 'no reason given'}")
    requests = _number(row, "requests") or 0
    if requests <= 0:
        return SloCheck(FAIL, "no request started in the window")
    samples = (_number(row, "ok") or 0) + (_number(row, "censored") or 0)
    if samples >= min_samples(slo.quantile):
        basis, latency = f"p{slo.quantile:g}", _number(row, slo.column)
    else:
        basis, latency = "max", _number(row, "max_ms")
    # Every part the row misses is named: a queue that also times out shows both.
    missed = []
    if latency is None:
        missed.append("no latency measured")
    elif latency > slo.latency_ms:
        missed.append(f"{basis} {latency:.0f} ms > {slo.latency_ms:g} ms")
    failed = (_number(row, "errors") or 0) + (_number(row, "timeouts") or 0)
    errors_pct = 100 * failed / requests
    if errors_pct > slo.errors_pct:
        missed.append(f"errors {errors_pct:.1f}% > {slo.errors_pct:g}%")
    if missed:
        return SloCheck(FAIL, "; ".join(missed), basis)
    return SloCheck(PASS, f"{basis} {latency:.0f} ms", basis)
