"""The API against its own OpenAPI document: generated requests for every operation (schemathesis).

Schemathesis is used as a library, its cases fed to Hypothesis's `@given`: its pytest plugin (and
Hypothesis's) are not loaded by the suite (pyproject's addopts), since loading them costs every pytest start
several seconds.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from support import AUTH, api_app as _app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    """The document as the service serves it (behind the token), from an app on a registry of its own."""
    tmp = tmp_path_factory.mktemp("fuzz")
    return schemathesis.openapi.from_asgi("/openapi.json", _app(tmp, f"sqlite:///{tmp / 'r.db'}"), headers=AUTH)


OPERATIONS = [("GET", "/healthz"), ("GET", "/studies"), ("POST", "/studies"), ("GET", "/studies/{study_id}"),
              ("GET", "/studies/{study_id}/logs"), ("POST", "/studies/{study_id}/stop"),
              ("POST", "/studies/{study_id}/resume"), ("GET", "/studies/{study_id}/best"),
              ("DELETE", "/studies/{study_id}")]


def test_api_fuzz_covers_every_documented_operation(schema):
    documented = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_api_conforms_to_its_openapi_document(schema, method, path):
    """Generated requests (25 per operation): no server error, every answer documented and matching its
    schema. A submitted space is YAML text whose validity no JSON Schema of the body can express, so for
    submissions a schema-valid body answered 422 is expected; every other check applies."""
    operation = schema[path][method]
    excluded = [positive_data_acceptance] if (method, path) == ("POST", "/studies") else []

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate(headers=AUTH, excluded_checks=excluded)

    check()
