"""Pydantic models of every request and response body, shared by all apps."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
    price: float = Field(ge=0)


class Item(ItemCreate):
    id: int


class ChatMessage(OpenAIModel):
    role: str
    content: str | list[Any] | None = None


class ChatCompletionRequest(OpenAIModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False


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
