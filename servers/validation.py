"""OpenAI's rules for a chat-completions request body, written once for the proxies and the mock.

Hand-written because no library checks a body as OpenAI does: the `openai` package has only
type hints (no ranges, no "stream_options needs stream"), and pydantic's messages and error
locations (`messages.0.role`, union member names, "Input should be ...") are not OpenAI's
(`messages[0].role`, "Invalid value: 'wizard'. Supported values are: ..."). The mock upstream
calls `check_chat_request` to answer 400 as OpenAI does; the proxies' request model calls it
too (`schemas.ChatCompletionRequest`), so what the proxy rejects never reaches the upstream and
the proxy's 400 is the same answer (message, `param`, `code`) the mock would have given.

Fields the lab neither sends nor knows pass unchecked (OpenAI objects grow new fields), as long
as the body is strict JSON: no NaN or Infinity, no lone surrogates (Python's `json` accepts
both; OpenAI, httpx and Starlette's JSON encoder do not).
"""

import json
from typing import Any

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
# The content part types each role may send (OpenAI's message types).
PART_TYPES: dict[str, tuple[str, ...]] = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
}
# The key each content part type carries, and the JSON type of its value.
PART_VALUE: dict[str, type] = {
    "text": str,
    "image_url": dict,
    "input_audio": dict,
    "file": dict,
    "refusal": str,
}
MAX_STOP = 4
PARSE_ERROR = "We could not parse the JSON body of your request."
NOT_JSON = "The request body must be JSON, sent with 'Content-Type: application/json'."


class InvalidRequest(ValueError):
    """A body OpenAI would answer 400 to: its message, the offending `param` and a `code`."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _kind(value: Any) -> str:
    """OpenAI's name for a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param,
        "invalid_type",
    )


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value):
        raise _wrong_type(name, "a decimal", value)
    if value < low:
        raise InvalidRequest(
            f"Invalid '{name}': decimal below minimum value. "
            f"Expected a value >= {low:g}, but got {value} instead.",
            name,
            "decimal_below_min_value",
        )
    if value > high:
        raise InvalidRequest(
            f"Invalid '{name}': decimal above maximum value. "
            f"Expected a value <= {high:g}, but got {value} instead.",
            name,
            "decimal_above_max_value",
        )


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_int(value):
        raise _wrong_type(name, "an integer", value)
    if value < low:
        raise InvalidRequest(
            f"Invalid '{name}': integer below minimum value. "
            f"Expected a value >= {low}, but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if high is not None and value > high:
        raise InvalidRequest(
            f"Invalid '{name}': integer above maximum value. "
            f"Expected a value <= {high}, but got {value} instead.",
            name,
            "integer_above_max_value",
        )


def _typed(body: dict[str, Any], name: str, kind: type, expected: str, param: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):  # str, dict, bool: no overlap
        raise _wrong_type(param, expected, value)


def _strict_json(body: Any) -> None:
    try:
        json.dumps(body, allow_nan=False, ensure_ascii=False).encode()
    except (ValueError, UnicodeEncodeError):
        raise InvalidRequest(PARSE_ERROR) from None


def _content_parts(parts: list[Any], role: str, param: str) -> None:
    allowed = PART_TYPES[role]
    for j, part in enumerate(parts):
        where = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _wrong_type(where, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise _missing(f"{where}.type")
        if not isinstance(kind, str):
            raise _wrong_type(f"{where}.type", "a string", kind)
        if kind not in allowed:
            supported = ", ".join(f"'{t}'" for t in allowed)
            raise InvalidRequest(
                f"Invalid value: {kind!r}. Supported values are: {supported}.",
                f"{where}.type",
                "invalid_value",
            )
        if kind not in part:
            raise _missing(f"{where}.{kind}")
        value_type = PART_VALUE[kind]
        expected = "a string" if value_type is str else "an object"
        _typed(part, kind, value_type, expected, f"{where}.{kind}")


def _message(message: Any, i: int) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _wrong_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise _missing(f"{where}.role")
    if not isinstance(role, str):
        raise _wrong_type(f"{where}.role", "a string", role)
    if role not in ROLES:
        supported = ", ".join(f"'{r}'" for r in ROLES[:-1]) + f", and '{ROLES[-1]}'"
        raise InvalidRequest(
            f"Invalid value: {role!r}. Supported values are: {supported}.",
            f"{where}.role",
            "invalid_value",
        )
    _typed(message, "name", str, "a string", f"{where}.name")
    content = message.get("content")
    optional = role == "function" or (
        role == "assistant" and ("tool_calls" in message or "function_call" in message)
    )
    if content is None and not optional:
        if "content" not in message:
            raise _missing(f"{where}.content")
        raise _wrong_type(f"{where}.content", "one of a string or array of objects", content)
    if content is None:
        pass
    elif isinstance(content, list) and role != "function":
        if not content:
            raise InvalidRequest(
                f"Invalid '{where}.content': empty array. Expected an array with minimum "
                "length 1, but got an empty array instead.",
                f"{where}.content",
                "empty_array",
            )
        _content_parts(content, role, f"{where}.content")
    elif not isinstance(content, str):
        raise _wrong_type(f"{where}.content", "one of a string or array of objects", content)
    if role == "tool":
        if "tool_call_id" not in message:
            raise _missing(f"{where}.tool_call_id")
        _typed(message, "tool_call_id", str, "a string", f"{where}.tool_call_id")
    if role == "function" and "name" not in message:
        raise _missing(f"{where}.name")


def check_chat_request(body: Any) -> None:
    """Raise `InvalidRequest` for the first rule the body breaks, as OpenAI would answer it.

    `body` is the parsed JSON (`None` for a `null` body, which is no request at all), or the raw
    bytes of a body that was not sent as JSON.
    """
    if body is None:
        raise InvalidRequest(PARSE_ERROR)
    if isinstance(body, bytes | bytearray):
        raise InvalidRequest(NOT_JSON)
    if not isinstance(body, dict):
        raise InvalidRequest(
            "Invalid type for the request body: "
            f"expected an object, but got {_kind(body)} instead.",
            None,
            "invalid_type",
        )
    _strict_json(body)
    if "model" not in body:
        raise _missing("model")
    if not isinstance(body["model"], str):
        raise _wrong_type("model", "a string", body["model"])
    if "messages" not in body:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for i, message in enumerate(messages):
        _message(message, i)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _integer(body, "n", 1, 128)
    _integer(body, "max_tokens", 1)
    _integer(body, "max_completion_tokens", 1)
    _integer(body, "seed", -(2**63), 2**63 - 1)
    _integer(body, "top_logprobs", 0, 20)
    _typed(body, "logprobs", bool, "a boolean", "logprobs")
    _typed(body, "user", str, "a string", "user")
    _stop(body.get("stop"))
    _typed(body, "stream", bool, "a boolean", "stream")
    _stream_options(body)


def _stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list):
        raise _wrong_type("stop", "one of a string or array of strings", stop)
    if len(stop) > MAX_STOP:
        raise InvalidRequest(
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, "
            f"but got an array with length {len(stop)} instead.",
            "stop",
            "array_above_max_length",
        )
    for j, value in enumerate(stop):
        if not isinstance(value, str):
            raise _wrong_type(f"stop[{j}]", "a string", value)


def _stream_options(body: dict[str, Any]) -> None:
    options = body.get("stream_options")
    if options is None:
        return
    if not body.get("stream"):
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            "invalid_value",
        )
    if not isinstance(options, dict):
        raise _wrong_type("stream_options", "an object", options)
    _typed(options, "include_usage", bool, "a boolean", "stream_options.include_usage")
