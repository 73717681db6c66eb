"""The official `openai` client against the mock upstream directly and through every proxy arm:
the same exception and status for a body OpenAI refuses, the same error body, and working plain
and streamed completions (the stream's usage chunk included)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.live import CHAT, CLIENT_PARAMS, live_mock, live_proxy

pytestmark = pytest.mark.integration

# Bodies OpenAI answers 400 to, with the `param` it names (the SDK sends them as they are).
REFUSED: list[Any] = [
    pytest.param(
        {"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", id="wizard"
    ),
    pytest.param({"temperature": "hot"}, "temperature", id="temperature-hot"),
    pytest.param({"temperature": 2.5}, "temperature", id="temperature-2.5"),
    pytest.param({"n": 0}, "n", id="n-0"),
    pytest.param({"stop": list("abcde")}, "stop", id="stop-5"),
    pytest.param(
        {"stream_options": {"include_usage": True}}, "stream_options", id="options-no-stream"
    ),
]


@pytest.fixture(scope="module")
def mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"LAB_MOCK_TTFT_MS": "5", "LAB_MOCK_ITL_MS": "1"}
    with live_mock(tmp_path_factory.mktemp("mock"), env) as url:
        yield url


@pytest.fixture(scope="module", params=CLIENT_PARAMS)
def proxy_url(
    request: pytest.FixtureRequest, mock_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    variant, client = request.param
    tmp: Path = tmp_path_factory.mktemp(f"{variant}-{client}")
    with live_proxy(variant, mock_url, tmp, {"LAB_HTTP_CLIENT": client}) as url:
        yield url


def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=10)


def refusal(base_url: str, fields: dict[str, Any], **kwargs: Any) -> openai.APIStatusError:
    body = {**CHAT, **fields}
    with sdk(base_url) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**body, **kwargs)
    return caught.value


@pytest.mark.parametrize(("fields", "param"), REFUSED)
def test_a_refused_body_is_the_same_error_direct_and_through_the_proxy(
    mock_url: str, proxy_url: str, fields: dict[str, Any], param: str
) -> None:
    direct = refusal(mock_url, fields)
    proxied = refusal(proxy_url, fields)
    assert type(direct) is type(proxied) is openai.BadRequestError
    assert direct.status_code == proxied.status_code == 400
    assert direct.body == proxied.body, (direct.body, proxied.body)
    assert isinstance(proxied.body, dict)
    assert proxied.body["param"] == param and proxied.body["type"] == "invalid_request_error"


def test_a_400_only_the_upstream_gives_is_relayed_unchanged(mock_url: str, proxy_url: str) -> None:
    """The proxy accepts the body; the mock refuses its header: the proxy passes the 400 on."""
    headers = {"x-mock-ttft-ms": "soon"}
    direct = refusal(mock_url, {}, extra_headers=headers)
    proxied = refusal(proxy_url, {}, extra_headers=headers)
    assert type(direct) is type(proxied) is openai.BadRequestError
    assert direct.body == proxied.body
    assert proxied.response.content == direct.response.content


def test_plain_and_streamed_completions_work(mock_url: str, proxy_url: str) -> None:
    for base_url in (mock_url, proxy_url):
        with sdk(base_url) as client:
            reply = client.chat.completions.create(**CHAT, max_tokens=3, temperature=0.5)
            assert reply.choices[0].message.content == "the quick brown"
            assert reply.usage is not None and reply.usage.completion_tokens == 3
            stream = client.chat.completions.create(
                **CHAT, max_tokens=3, stream=True, stream_options={"include_usage": True}
            )
            chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "the quick brown"
        # OpenAI's usage chunk: last, with no choices; the others say `usage: null`.
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 3
        assert all(c.usage is None for c in chunks[:-1])


def test_without_include_usage_no_usage_chunk(proxy_url: str) -> None:
    with sdk(proxy_url) as client:
        chunks = list(client.chat.completions.create(**CHAT, max_tokens=2, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
