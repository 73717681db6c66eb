"""`chat` and `chat_stream`: the OpenAI-style proxy in front of the mock upstream."""

import json
import time
from typing import Any

from locust import FastHttpUser, task

from contract import TIMEOUT
from loadtests.locustfiles.common import back_to_back, expect, fail, outcome_of, tracked

PATH = "/v1/chat/completions"
LABEL = f"POST {PATH}"


def chat_body(max_tokens: int, stream: bool) -> dict[str, Any]:
    """The request body Locust sends."""
    return {
        "model": "mock",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def mock_headers(opts: Any) -> dict[str, str]:
    """The upstream latency of this run, forwarded by the proxy to the mock."""
    return {"x-mock-ttft-ms": str(opts.ttft_ms), "x-mock-itl-ms": str(opts.itl_ms)}


def _is_completion(body: dict, tokens: int) -> bool:
    return (
        body["object"] == "chat.completion"
        and bool(body["choices"][0]["message"]["content"])
        and body["usage"]["completion_tokens"] == tokens
    )


class ChatUser(FastHttpUser):
    """Non-streaming chat completions back to back."""

    @task
    @back_to_back
    def chat(self) -> None:
        """One completion."""
        opts = self.environment.parsed_options
        with (
            tracked(LABEL),
            self.client.post(
                PATH,
                json=chat_body(opts.max_tokens, stream=False),
                headers=mock_headers(opts),
                catch_response=True,
            ) as r,
        ):
            expect(r, 200, lambda body: _is_completion(body, opts.max_tokens))


def read_stream(response: Any, on_token: Any) -> str | None:
    """Read SSE lines, calling `on_token()` per content delta; return an error or None."""
    raw = response._response  # geventhttpclient's response: readline returns as lines arrive
    finished = False
    while line := raw.readline(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return None if finished else "stream ended without finish_reason"
        chunk = json.loads(data)
        if "error" in chunk:
            return f"error event: {data[:200]!r}"
        choice = chunk["choices"][0]
        if choice["delta"].get("content"):
            on_token()
        finished = finished or choice.get("finish_reason") is not None
    return "stream closed before [DONE]"


class ChatStreamUser(FastHttpUser):
    """Streaming chat completions back to back; TTFT and each inter-token gap are own entries."""

    @task
    @back_to_back
    def chat_stream(self) -> None:
        """One streamed completion."""
        opts = self.environment.parsed_options
        fire = self.environment.events.request.fire
        start = time.perf_counter()
        marks: list[float] = []
        with (
            tracked(LABEL),
            self.client.post(
                PATH,
                json=chat_body(opts.max_tokens, stream=True),
                headers=mock_headers(opts),
                stream=True,
                catch_response=True,
            ) as r,
        ):
            if r.status_code != 200:
                fail(r, f"status {r.status_code}: {(r.text or '')[:200]}")
                return
            try:
                error = read_stream(r, lambda: marks.append(time.perf_counter()))
            except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
                if outcome_of(exc) == TIMEOUT:
                    r.failure(exc)  # the client's own timeout, mid-stream: outcome `timeout`
                    return
                error = f"bad stream: {exc!r}"
            if error is None and len(marks) != opts.max_tokens:
                error = f"{len(marks)} tokens, expected {opts.max_tokens}"
            # The whole stream, not just the headers Locust timed.
            r.request_meta["response_time"] = (time.perf_counter() - start) * 1000
            started = r.request_meta["start_time"]
            for kind, since, mark in zip(
                ["ttft"] + ["itl"] * len(marks), [start, *marks], marks, strict=False
            ):
                fire(
                    request_type=kind.upper(),
                    name=PATH,
                    response_time=(mark - since) * 1000,
                    response_length=0,
                    exception=None,
                    context={"kind": kind, "label": LABEL},
                    start_time=started,
                )
            if error is None:
                r.success()
            else:
                r.failure(error)
