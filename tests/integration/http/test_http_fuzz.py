"""Property-based fuzzing of every endpoint from the app's own OpenAPI schema (schemathesis),
with a valid admin key, against the real server: no 5xx, and every response (errors too)
conforms to the schema."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from api_support import RunningApi, ThreadedApi, make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    with ThreadedApi(make_settings(Path(tmp_path_factory.mktemp("fuzz")))) as api:
        # Someone to find: a user with a message, a fact and a relationship.
        headers = api.headers()
        chat = "/api/v1/agents/fish/channels/general/messages"
        assert (
            httpx.post(
                api.url + chat, json={"author_id": "ana", "text": "@fish hi"}, headers=headers
            ).status_code
            == 200
        )
        httpx.post(
            api.url + "/api/v1/agents/fish/users/ana/memories",
            json={"fact": "Ana sails"},
            headers=headers,
        )
        yield api


@pytest.fixture(scope="module")
def api_schema(live_api: RunningApi) -> OpenApiSchema:
    return schemathesis.openapi.from_url(live_api.url + "/openapi.json")


# More examples under CI (CI set), still well under a minute on two cores; fewer locally.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FUZZ = settings(
    max_examples=25 if IN_CI else 12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _fuzz(operation: APIOperation, mode: GenerationMode, api: RunningApi) -> None:
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode), known=st.booleans())
    def call(case: schemathesis.Case, known: bool) -> None:
        # The served agent and, half the time, a user who exists, so the fuzzing reaches past
        # the 404s (unknown agents and users are tested in test_http_auth_errors).
        parameters = case.path_parameters or {}
        if mode is GenerationMode.POSITIVE and "agent_id" in parameters:
            parameters["agent_id"] = "fish"
            if known and "user_id" in parameters:
                parameters["user_id"] = "ana"
        case.call_and_validate(base_url=api.url, headers=api.headers(), checks=CHECKS)

    try:
        call()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, operation.path


def test_every_endpoint_survives_fuzzing(api_schema: OpenApiSchema, live_api: RunningApi) -> None:
    fuzzed = set()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, live_api)
        fuzzed.add(f"{operation.method.upper()} {operation.path}")
    assert len(fuzzed) >= 20
    assert "POST /api/v1/agents/{agent_id}/channels/{channel_id}/messages" in fuzzed


def test_the_schema_documents_the_error_shape(
    api_schema: OpenApiSchema, live_api: RunningApi
) -> None:
    document = httpx.get(live_api.url + "/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in ("/healthz", "/readyz", "/metrics"):
                continue
            responses = operation["responses"]
            for status in ("401", "404", "422"):
                ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (method, path, status)
