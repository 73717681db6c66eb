"""The analysis's words for what a cell is, written once: handler styles (a variant, with its HTTP
client when that is not the default one), their names in the report's text and in chart legends,
their order, the clients, the arms and the baseline every ratio is taken against.

Plain data and small functions, imported by every layer (load, judge, plot, report, sections);
it imports only `contract` and `analysis.fmt`. Colours stay with the pictures
(analysis.plot.styles), keyed by the styles named here.
"""

from collections.abc import Iterable

import contract
from analysis.fmt import plain

# --- variants: the three ways each endpoint is written (contract.VARIANTS) ----------------------
SYNC = "sync"  # `def` + a sync library, run in anyio's threadpool
ASYNC = "async"  # `async def` + an async library
BLOCKING = "blocking"  # `async def` calling the sync library directly: the docs' anti-pattern
VARIANTS: tuple[str, ...] = contract.VARIANTS

# How the report's text names a variant: the code a reader would write. The one wording of each
# style; chart legends use it too (`label`), without the code marks.
VARIANT_WORDS: dict[str, str] = {
    SYNC: "`def`",
    ASYNC: "`async def`",
    BLOCKING: "`async def` + sync lib",
}

# --- clients ------------------------------------------------------------------------------------
# Every proxy app's default client: a cell with it is its variant's plain style.
DEFAULT_CLIENT = "httpx"
# A cell without an HTTP client (hello, cpu, the items scenarios): `-` in summary.csv, `none` in
# cell ids, empty in hand-built frames.
NO_CLIENTS: frozenset[str] = frozenset({contract.NO_CLIENT, "", "none"})
CLIENTS: tuple[str, ...] = contract.CLIENTS

# --- styles: a variant, with its client when it is not the default ------------------------------
# The styles the lab runs, in the order every table and legend shows them: each variant, its
# default client first. An unknown style sorts after them, alphabetically.
STYLES: tuple[str, ...] = (
    SYNC,
    f"{SYNC} (httpx2)",
    ASYNC,
    f"{ASYNC} (httpx2)",
    f"{ASYNC} (aiohttp)",
    BLOCKING,
)

# --- the baseline and the references ------------------------------------------------------------
# What every ratio to "`def`" is against: `def` as the FastAPI docs write it, with httpx where
# the scenario has a client, in the default arm.
BASELINE = SYNC
BASELINE_CLIENT = DEFAULT_CLIENT
# The only style anyio's threadpool runs: the one a threadpool-token sweep varies.
THREADED = SYNC
# `async def` with each client `make bench` runs it with: the references `def` is held against
# (the fastest of them is the fair bar).
ASYNC_REFERENCES: tuple[str, ...] = (ASYNC, f"{ASYNC} (aiohttp)")

# --- arms ---------------------------------------------------------------------------------------
# The main matrix; a named arm (matrix `[[arms]]`) changes one server setting.
DEFAULT_ARM = ""
# clients.toml's arm: `def` streaming as fixed (admission limit, closing StreamingResponse), run
# with each client: where plain `def` streaming cannot be compared, the clients section reads it.
STREAM_FIX_ARM = "stream_fix"
# abandon.toml's arm: cancel a request's work when its client leaves (the abandon section's).
CANCEL_ARM = "cancel"


def names_client(client: object) -> bool:
    """Whether a summary `client` names an HTTP client (not `-`, `none`, empty or missing)."""
    text = str(client).strip()
    return text not in NO_CLIENTS and text != "nan"


def style_of(variant: str, client: str) -> str:
    """The style key of one cell, e.g. `async (aiohttp)`; `async` for httpx or no client."""
    return variant if client in NO_CLIENTS or client == DEFAULT_CLIENT else f"{variant} ({client})"


def split_style(style: str) -> tuple[str, str]:
    """(variant, client) of a style key; the client is "" for a plain style."""
    variant, _, client = style.partition(" (")
    return variant, client.removesuffix(")")


def variant_words(variant: str) -> str:
    """`` `def` ``, `` `async def` ``, `` `async def` + sync lib `` (unknown: `` `x` ``)."""
    return VARIANT_WORDS.get(variant, f"`{variant}`")


def style_words(variant: str, client: str, *, always_client: bool = False) -> str:
    """A style in the report's text: `` `def` ``, `` `async def` + aiohttp ``, `` `def` + httpx2 ``.

    The client is named when it is not the default one, always for `async def` (whose library is
    its point: httpx or aiohttp), and for every client with `always_client`.
    """
    text = variant_words(variant)
    if names_client(client) and (always_client or variant == ASYNC or client != DEFAULT_CLIENT):
        text += f" + {client}"
    return text


def label(style: str) -> str:
    """A style in a chart legend or a table header: `sync: def`, `async: async def + aiohttp`;
    an unknown style by its key."""
    if style not in STYLES:
        return style
    variant, client = split_style(style)
    return f"{variant}: {plain(variant_words(variant))}" + (f" + {client}" if client else "")


def ordered(styles: Iterable[str]) -> list[str]:
    """Styles in the canonical order (STYLES), then the rest alphabetically."""
    unique = set(styles)
    known = [s for s in STYLES if s in unique]
    return known + sorted(unique - set(STYLES))
