"""The one colour each handler style has in every chart, keyed by analysis.vocabulary's styles."""

from analysis.vocabulary import ASYNC, BLOCKING, SYNC

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE: dict[str, str] = {
    SYNC: "#0072B2",
    # `def` with httpx2, the httpx fork whose pool lock is re-entrant: sync's lighter blue.
    f"{SYNC} (httpx2)": "#56B4E9",
    ASYNC: "#009E73",
    # `async def` with httpx2's AsyncClient: async's lighter green, as sync (httpx2) is to sync.
    f"{ASYNC} (httpx2)": "#7FCDB8",
    f"{ASYNC} (aiohttp)": "#E69F00",
    BLOCKING: "#D55E00",
}
# Never one of PALETTE's: an unknown style must not take a known style's colour.
_SPARE_COLOURS: tuple[str, ...] = ("#CC79A7", "#F0E442", "#000000", "#999999")


def colour(style: str) -> str:
    """The one colour a style has in every chart (unknown styles get a stable spare colour)."""
    if style in PALETTE:
        return PALETTE[style]
    # A stable pick so an unexpected style keeps its colour from chart to chart.
    return _SPARE_COLOURS[sum(map(ord, style)) % len(_SPARE_COLOURS)]
