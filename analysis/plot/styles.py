"""Handler styles: how a (variant, client) pair is named, ordered and coloured in every chart."""

from collections.abc import Iterable

import pandas as pd

from contract import NO_CLIENT

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE: dict[str, str] = {
    "sync": "#0072B2",
    # `def` with httpx2, the httpx fork whose pool lock is re-entrant: sync's lighter blue.
    "sync (httpx2)": "#56B4E9",
    "async": "#009E73",
    # `async def` with httpx2's AsyncClient: async's lighter green, as sync (httpx2) is to sync.
    "async (httpx2)": "#7FCDB8",
    "async (aiohttp)": "#E69F00",
    "blocking": "#D55E00",
}
LABELS: dict[str, str] = {
    "sync": "sync: def",
    "sync (httpx2)": "sync: def + httpx2",
    "async": "async: async def",
    "async (httpx2)": "async: async def + httpx2",
    "async (aiohttp)": "async: async def + aiohttp",
    "blocking": "blocking: async def + sync lib",
}
ORDER: tuple[str, ...] = tuple(PALETTE)
# Never one of PALETTE's: an unknown style must not take a known style's colour.
_SPARE_COLOURS: tuple[str, ...] = ("#CC79A7", "#F0E442", "#000000", "#999999")

# httpx is every proxy app's default client, so only another client earns its own style.
DEFAULT_CLIENTS: frozenset[str] = frozenset({NO_CLIENT, "", "httpx", "none"})


def style_of(variant: str, client: str) -> str:
    """The style key of one cell, e.g. `async (aiohttp)`."""
    return variant if client in DEFAULT_CLIENTS else f"{variant} ({client})"


def add_style(summary: pd.DataFrame) -> pd.DataFrame:
    """A copy of `summary` with a `style` column derived from `variant` and `client`."""
    out = summary.copy()
    out["style"] = [style_of(v, c) for v, c in zip(out["variant"], out["client"], strict=True)]
    return out


def colour(style: str) -> str:
    """The one colour a style has in every chart (unknown styles get a stable spare colour)."""
    if style in PALETTE:
        return PALETTE[style]
    # A stable pick so an unexpected style keeps its colour from chart to chart.
    return _SPARE_COLOURS[sum(map(ord, style)) % len(_SPARE_COLOURS)]


def label(style: str) -> str:
    """The legend label of a style."""
    return LABELS.get(style, style)


def ordered(styles: Iterable[str]) -> list[str]:
    """Styles in the canonical order (ORDER: each variant, its default client first), then the
    rest."""
    unique = set(styles)
    known = [s for s in ORDER if s in unique]
    return known + sorted(unique - set(ORDER))
