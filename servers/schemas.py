"""Pydantic models of every request and response body, shared by all apps."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from servers.validation import InvalidRequest, check_chat_request

# The error type of a rule of `servers.validation` broken in a request body (its `ctx` carries
# OpenAI's `param` and `code`), read by `servers.errors`.
OPENAI_RULE = "openai_rule"


class OpenAIModel(BaseModel):
    """OpenAI objects grow new fields; keep the unknown ones instead of dropping them."""

    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Hello(BaseModel):
    message: str = "hello"


class CpuResult(BaseModel):
    n: int
    result: int


class ItemCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    # Infinity would be stored, then fail every JSON answer that reads the row back.
    price: float = Field(ge=0, allow_inf_nan=False)

    @field_validator("name", "description")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        """A lone surrogate (`"\\ud800"` is valid JSON) cannot be encoded for SQLite, and
        PostgreSQL's text cannot hold NUL: both are refused on every database alike."""
        if value is not None:
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode (no lone surrogates)") from None
            if "\x00" in value:
                raise ValueError("must not contain NUL characters")
        return value


class Item(ItemCreate):
    id: int


class ChatMessage(OpenAIModel):
    role: Literal["system", "assistant", "user", "function", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(OpenAIModel):
    """A chat request, checked by OpenAI's rules (`servers.validation`) before its fields.

    The fields document the body in the OpenAPI schema; the rules give a broken body OpenAI's
    answer (`param`, `code`), so it never reaches the upstream.
    """

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _openai_rules(cls, data: Any) -> Any:
        try:
            check_chat_request(data)
        except InvalidRequest as exc:
            context = {"param": exc.param, "code": exc.code}
            raise PydanticCustomError(OPENAI_RULE, exc.message, context) from None
        return data


class Usage(OpenAIModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Choice(OpenAIModel):
    index: int
    message: ChatMessage
    finish_reason: str | None = None


class ChatCompletion(OpenAIModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class Delta(OpenAIModel):
    role: str | None = None
    content: str | None = None


class ChunkChoice(OpenAIModel):
    index: int
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(OpenAIModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]


class ModelCard(OpenAIModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(OpenAIModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope."""

    error: ErrorDetail
