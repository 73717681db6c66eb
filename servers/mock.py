"""What the mock upstream answers (from settings, headers and body) and its served tally: pure."""

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, get_args

from servers.latency import LatencyModel, choose_fault, count_prompt_tokens, token_text
from servers.settings import Fault, Settings
from servers.validation import InvalidRequest, check_chat_request

MODEL_ID = "mock-llm"
# The mock model's output limit: more is a 400, as OpenAI answers for a model's own limit
# (and the mock never draws a latency per token for millions of tokens).
MAX_OUTPUT_TOKENS = 16_384
MAX_TOKEN_CHARS = 4096

# The request cannot be served; the message says why (and `param` which field, if one).
BadRequest = InvalidRequest


@dataclass(frozen=True)
class Plan:
    """One request's fate: its delays (one per token), its text and its fault."""

    model: str
    delays: list[float]
    prompt_tokens: int
    fault: Fault
    finish_reason: str
    include_usage: bool
    token_chars: int = 0

    @property
    def tokens(self) -> int:
        return len(self.delays)

    @property
    def configured_s(self) -> float:
        """The latency the model asked for: TTFT + ITL x (tokens - 1), jitter included."""
        return sum(self.delays)


@dataclass
class ServedStats:
    """What the mock really served next to what its latency model asked for, summed.

    A request counts once its body is complete and it had no fault: 400s, the 429/500/503
    answers, `stall` (its wait is not the model's) and `abort` are left out, and so is a stream
    the client left early. `served` runs from the handler's start to the last byte handed to the
    server; `ttft` to the first content token handed over (for a non-streaming reply, the whole
    body, so it equals `served`). `open_streams` counts streams under way, whatever their fate;
    `streamed_bytes` the stream bytes handed to the server (a reader that stops reading stops it,
    once the buffers between fill: tests/test_backpressure.py).

    The mock is one process with one event loop and nothing awaits between reading and writing
    these numbers, so plain attributes are enough: no locks.
    """

    requests: int = 0
    served_ms_sum: float = 0.0
    configured_ms_sum: float = 0.0
    ttft_ms_sum: float = 0.0
    open_streams: int = 0
    streamed_bytes: int = 0

    def record(self, served_s: float, configured_s: float, ttft_s: float) -> None:
        """Count one completed request."""
        self.requests += 1
        self.served_ms_sum += served_s * 1000
        self.configured_ms_sum += configured_s * 1000
        self.ttft_ms_sum += ttft_s * 1000

    def to_dict(self) -> dict[str, int | float]:
        """The `GET /stats` body."""
        return asdict(self)


def _header_float(headers: Mapping[str, str], name: str, default: float) -> float:
    if name not in headers:
        return default
    try:
        value = float(headers[name])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest(
            f"header {name} must be a number, got {headers[name]!r}", None, "invalid_value"
        )
    return value


def plan_request(
    settings: Settings, headers: Mapping[str, str], body: Any, rng: random.Random
) -> Plan:
    """Validate the body (OpenAI's rules) and draw this request's latency and fault."""
    check_chat_request(body)
    messages, model = body["messages"], body["model"]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None and max_tokens > MAX_OUTPUT_TOKENS:
        name = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
        raise BadRequest(
            f"{name} is too large: {max_tokens}. This model supports at most "
            f"{MAX_OUTPUT_TOKENS} completion tokens, whereas you provided {max_tokens}.",
            name,
            "invalid_value",
        )
    fault = headers.get("x-mock-fault", settings.mock_fault)
    if fault not in get_args(Fault):
        raise BadRequest(
            f"x-mock-fault must be one of {get_args(Fault)}, got {fault!r}", None, "invalid_value"
        )
    # A fault asked for by header with no rate is meant to happen.
    default_rate = 1.0 if "x-mock-fault" in headers else settings.mock_fault_rate
    latency = LatencyModel(
        ttft_ms=_header_float(headers, "x-mock-ttft-ms", settings.mock_ttft_ms),
        itl_ms=_header_float(headers, "x-mock-itl-ms", settings.mock_itl_ms),
        jitter=_header_float(headers, "x-mock-jitter", settings.mock_jitter),
    )
    if min(latency.ttft_ms, latency.itl_ms) < 0 or not 0 <= latency.jitter <= 1:
        raise BadRequest("latencies must be >= 0 and jitter within [0, 1]", None, "invalid_value")
    token_chars = _header_float(headers, "x-mock-token-chars", 0)
    if not 0 <= token_chars <= MAX_TOKEN_CHARS or token_chars != int(token_chars):
        raise BadRequest(
            f"x-mock-token-chars must be an integer in [0, {MAX_TOKEN_CHARS}]",
            None,
            "invalid_value",
        )
    return Plan(
        model=model,
        delays=latency.delays(max_tokens or settings.mock_output_tokens, rng),
        prompt_tokens=count_prompt_tokens(messages),
        fault=choose_fault(fault, _header_float(headers, "x-mock-fault-rate", default_rate), rng),
        finish_reason="length" if max_tokens else "stop",
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        token_chars=int(token_chars),
    )


def usage(plan: Plan) -> dict[str, int]:
    """OpenAI's `usage` object."""
    total = plan.prompt_tokens + plan.tokens
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.tokens,
        "total_tokens": total,
    }


def completion(plan: Plan, completion_id: str, created: int) -> dict[str, Any]:
    """The non-streaming `chat.completion` object."""
    text = "".join(token_text(i, plan.token_chars) for i in range(plan.tokens))
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": plan.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": plan.finish_reason,
            }
        ],
        "usage": usage(plan),
    }


def chunk(
    plan: Plan,
    completion_id: str,
    created: int,
    delta: dict[str, str],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk` with a single choice (and `usage: null` when the last chunk
    will carry the usage, as OpenAI sends it)."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": plan.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if plan.include_usage:
        body["usage"] = None
    return body


def token_delta(index: int, chars: int = 0) -> dict[str, str]:
    """The delta carrying token `index`; the first also names the role, as OpenAI does."""
    if index == 0:
        return {"role": "assistant", "content": token_text(0, chars)}
    return {"content": token_text(index, chars)}


def usage_chunk(plan: Plan, completion_id: str, created: int) -> dict[str, Any]:
    """The trailing chunk sent when `stream_options.include_usage` is set."""
    body = chunk(plan, completion_id, created, {})
    body["choices"] = []
    body["usage"] = usage(plan)
    return body


def models(created: int) -> dict[str, Any]:
    """The `GET /v1/models` list."""
    return {
        "object": "list",
        "data": [
            {"id": MODEL_ID, "object": "model", "created": created, "owned_by": "sync-async-lab"}
        ],
    }
