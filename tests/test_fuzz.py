"""Schemathesis against each variant's OpenAPI document (the three are equal): generated
requests, valid and not, against a real server; no 500s and no answer off its schema.

The checks are the ones the issue asks for: no server error, and every answer's status,
content type, headers and body as documented. Left out: whether schema-valid bodies are
accepted and schema-invalid ones refused (the chat schema documents the fields, while OpenAI's
rules in `servers.validation` are stricter, e.g. a `tool` message needs `tool_call_id`; and
pydantic's lax mode takes `"price": false` as 0), and Starlette's `Allow` header on a 405.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import VARIANTS, load_app
from tests.live import live_mock, live_proxy

pytestmark = pytest.mark.integration

# `/cpu?n=` burns n milliseconds, up to 10,000: the fuzz gets a copy of the document whose `n`
# stops at CPU_MS_MAX, so its examples spend their time on requests, not on burning CPU (the
# real bound is tested in test_bad_input.py). Every other operation is fuzzed as documented.
CPU_MS_MAX = 20
DOCUMENT = json.loads(json.dumps(load_app("sync").openapi()))
for _parameter in DOCUMENT["paths"]["/cpu"]["get"]["parameters"]:
    if _parameter["name"] == "n":
        _parameter["schema"]["maximum"] = CPU_MS_MAX
schema = schemathesis.openapi.from_dict(DOCUMENT)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 15  # per operation and variant (make test stays under 10 minutes)


@pytest.fixture(scope="module")
def mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"LAB_MOCK_TTFT_MS": "0", "LAB_MOCK_ITL_MS": "0"}
    with live_mock(tmp_path_factory.mktemp("mock"), env) as url:
        yield url


@pytest.fixture(scope="module", params=VARIANTS)
def server_url(
    request: pytest.FixtureRequest, mock_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp(request.param)
    with live_proxy(request.param, mock_url, tmp) as url:
        yield url


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests(case: schemathesis.Case, server_url: str) -> None:
    case.call_and_validate(base_url=server_url, checks=CHECKS)
