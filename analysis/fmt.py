"""Numbers as the report writes them: rates, milliseconds, counts."""

import math

import pandas as pd


def number(x: float) -> str:
    """A count or percentage: thousands separated, two significant digits when small."""
    if pd.isna(x):
        return "-"
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.2g}"


def rate(x: float) -> str:
    """Requests per second: `1,234/s`, `4.8/s`."""
    if math.isnan(x):
        return "n/a"
    return f"{x:,.0f}/s" if x >= 10 else f"{x:.1f}/s"


def ms(x: float) -> str:
    """Milliseconds: `1,234 ms`, `4.0 ms`."""
    if math.isnan(x):
        return "n/a"
    return f"{x:,.0f} ms" if x >= 10 else f"{x:.1f} ms"


def ms_or_missing(x: object) -> str:
    """Milliseconds, or `not recorded` for a missing value."""
    if x is None or pd.isna(x):  # type: ignore[arg-type]
        return "not recorded"
    return ms(float(x))  # type: ignore[arg-type]


def plain(text: str) -> str:
    """Report text without its Markdown code marks, for a chart: `` `def` `` -> `def`."""
    return text.replace("`", "")
