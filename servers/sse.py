"""Server-sent events framing as the OpenAI streaming API uses it.

`whole_events` / `awhole_events` are hand-written because the relays pass the upstream's bytes
on as they come (no parsing, no re-encoding), and bytes come cut wherever TCP cut them: if the
upstream fails mid-stream, the relay must end with exactly one well-formed error event, so it
holds back an event's first half until its end arrives, and the error replaces what was held.
"""

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"


def sse_data(payload: Any) -> bytes:
    """One `data: <json>` event."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def parse_sse_data(lines: list[str]) -> list[str]:
    """The `data:` payloads of a stream's lines, in order (comments and blank lines dropped)."""
    return [line[5:].strip() for line in lines if line.startswith("data:")]


class EventFramer:
    """Cuts a byte stream after its last complete event (a blank line ends an event)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The complete events so far (maybe none); the rest waits for the next chunk."""
        data = self.pending + chunk
        lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
        end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
        self.pending = data[end:]
        return data[:end]


def whole_events(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks` regrouped into complete events; a clean end passes on whatever is left."""
    framer = EventFramer()
    for chunk in chunks:
        if events := framer.feed(chunk):
            yield events
    if framer.pending:
        yield framer.pending


async def awhole_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """`whole_events` for an async byte stream."""
    framer = EventFramer()
    async for chunk in chunks:
        if events := framer.feed(chunk):
            yield events
    if framer.pending:
        yield framer.pending
