"""Server-sent events framing as the OpenAI streaming API uses it."""

import json
from typing import Any

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"


def sse_data(payload: Any) -> bytes:
    """One `data: <json>` event."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def parse_sse_data(lines: list[str]) -> list[str]:
    """The `data:` payloads of a stream's lines, in order (comments and blank lines dropped)."""
    return [line[5:].strip() for line in lines if line.startswith("data:")]
