"""The API against its own OpenAPI document: generated requests for every operation (schemathesis), then
generated attacks by a caller without the token and by one holding it (Hypothesis): the security cases that
tests/test_api.py and tests/test_security_e2e.py check by example, fuzzed.

Schemathesis is used as a library, its cases fed to Hypothesis's `@given`: its pytest plugin (and
Hypothesis's) are not loaded by the suite (pyproject's addopts), since loading them costs every pytest start
several seconds.
"""

from __future__ import annotations

import json
import os
import re
import sys
from urllib.parse import quote

import pytest
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service._registry import Registry
from service.space._trainable import MODULE_PATTERN
from support import AUTH, SPACE, TOKEN, api_app as _app
from trainables import BUILTIN_TRAINABLES

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


# -- generated attacks ------------------------------------------------------------------------------------------
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
ADMITTED = "mylab.models"  # what the cluster's admin admits in these tests (HPSEARCH_TRAINABLE_MODULES)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """The service with an admitted module and a data folder, on a registry of its own."""
    tmp = tmp_path_factory.mktemp("attacks")
    registry_url = f"sqlite:///{tmp / 'r.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HPSEARCH_TRAINABLE_MODULES", ADMITTED)
        patch.setenv("HPSEARCH_DATA_DIR", str(tmp / "data"))
        (tmp / "data").mkdir()
        yield {"api": TestClient(_app(tmp, registry_url), raise_server_exceptions=False),
               "registry": Registry(registry_url), "registry_url": registry_url, "data": tmp / "data"}


def _one_json_line(response) -> str:
    """The body's `detail`, after checking the body is one line of JSON with nothing else in it."""
    assert response.headers["content-type"] == "application/json", response.text
    assert "\n" not in response.text.strip(), response.text
    body = json.loads(response.text)
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    return body["detail"]


_SEGMENT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_HEADERS = st.one_of(
    st.none(), st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=80),
    st.builds(lambda scheme, rest: f"{scheme} {rest}", st.sampled_from(["Bearer", "bearer", "Basic", "Token"]),
              st.one_of(st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=70),
                        st.builds(lambda cut, extra: TOKEN[:cut] + extra, st.integers(0, len(TOKEN)),
                                  st.text(alphabet="0123456789abcdef", max_size=3)))),
).filter(lambda header: header is None or header.strip() != f"Bearer {TOKEN}")


@given(method_path=st.sampled_from(OPERATIONS + [("GET", "/openapi.json"), ("GET", "/{anything}")]),
       segment=_SEGMENT, header=_HEADERS)
@FUZZ
def test_api_fuzz_without_the_token_every_request_is_refused(attacked, method_path, segment, header):
    """Any method and path, any header but the token itself (prefixes of it, other schemes, bytes): 401 and
    one JSON line, before anything is read or recorded."""
    method, path = method_path
    path = re.sub(r"\{\w+\}", quote(segment, safe="") or "x", path)
    headers = {"Authorization": header.encode("latin-1")} if header is not None else {}  # any byte a header may hold
    response = attacked["api"].request(method, path, headers=headers,
                                       json={"space": SPACE} if method == "POST" else None)
    assert response.status_code == 401, (method, path, response.status_code, response.text)
    _one_json_line(response)


_IDENTIFIER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
_MODULE = st.one_of(
    st.sampled_from(sorted(sys.stdlib_module_names)),  # os, subprocess, builtins, pty, ...
    st.sampled_from(["pip", "pip.__main__", "setuptools", "ray.scripts.scripts", "mlflow.cli", "torch.hub",
                     "service.cli", "trainables", ADMITTED + "x", "mylab", "." + ADMITTED, ADMITTED + "."]),
    st.lists(_IDENTIFIER, min_size=1, max_size=4).map(".".join),
    st.text(max_size=30),
)
_TRAINABLES = st.one_of(
    st.builds(lambda module, function: f"{module}:{function}", _MODULE, st.one_of(_IDENTIFIER, st.text(max_size=10))),
    st.text(max_size=30),
    st.sampled_from([f"{ADMITTED}:train", f"{ADMITTED}.cnn:train", *BUILTIN_TRAINABLES]),  # these pass
)


def _yaml_line(key: str, value: str) -> str:
    """`key: "value"` in YAML, any character escaped as YAML wants it."""
    return yaml.safe_dump({key: value}, default_style='"', width=10**6).strip().replace(f'"{key}"', key, 1)


def _admitted(trainable: str) -> bool:
    module = trainable.split(":", 1)[0]
    return trainable in BUILTIN_TRAINABLES or (
        ":" in trainable and (module == ADMITTED or module.startswith(ADMITTED + ".")))


@given(trainable=_TRAINABLES)
@FUZZ
def test_api_fuzz_only_admitted_trainables_pass_and_nothing_is_imported(attacked, trainable):
    """Any trainable name a token holder sends: refused with 422 (naming the policy when the name is a
    well-formed module) unless it is a built-in or under the admitted modules; a refusal records nothing, and
    no submission imports the module a `module:function` name names, or a package above it."""
    space = SPACE.replace("trainable: mlp", _yaml_line("trainable", trainable))
    modules_before, recorded_before = set(sys.modules), len(attacked["registry"].list(limit=10000))
    response = attacked["api"].post("/studies", json={"space": space, "filename": "s.yaml"}, headers=AUTH)

    assert response.status_code != 500, response.text
    module = trainable.split(":", 1)[0]
    if ":" in trainable:
        named = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}  # and its parents
        assert {name for name in named if name in sys.modules} <= modules_before
    if _admitted(trainable):
        assert response.status_code in (201, 422, 503), response.text  # 422: e.g. its metric; 503: Ray is down
        if response.status_code == 422:
            assert "not admitted" not in _one_json_line(response)
        return
    assert response.status_code == 422, (trainable, response.text)
    detail = _one_json_line(response)
    if ":" in trainable and re.fullmatch(MODULE_PATTERN, module):
        assert "not admitted by the trainable policy" in detail and "HPSEARCH_TRAINABLE_MODULES" in detail, detail
    assert len(attacked["registry"].list(limit=10000)) == recorded_before


_NAME_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))
_FILENAMES = st.one_of(
    st.text(_NAME_CHARS, min_size=1, max_size=40),
    st.lists(st.sampled_from(["..", ".", "/", "\x00", "etc", "passwd", "s.yaml", "\\", " ", "~"]),
             min_size=1, max_size=6).map("".join),
)


@given(filename=_FILENAMES)
@FUZZ
def test_api_fuzz_a_filename_is_only_ever_a_name(attacked, filename):
    """Whatever `filename` a client sends, the service keeps it only if it is a plain name (no folder, no NUL,
    no leading dot); anything else is 422 and one JSON line, never a 500."""
    response = attacked["api"].post("/studies", json={"space": SPACE, "filename": filename}, headers=AUTH)
    assert response.status_code != 500, response.text
    if response.status_code == 422:
        assert _one_json_line(response).startswith("filename:")
    else:
        assert response.status_code in (201, 503), response.text
        assert "/" not in filename and "\x00" not in filename and "\\" not in filename
        assert not filename.startswith(".") and os.path.basename(filename) == filename


_PATHS = st.one_of(
    st.lists(st.sampled_from(["..", ".", "data", "x.csv", "/", "//", "etc", "passwd", "~", "%2e%2e", "a b"]),
             min_size=1, max_size=8).map("/".join),
    st.lists(st.sampled_from(["..", "/", "x.csv", "sub", "."]), min_size=1, max_size=8).map("".join),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30),
)


@given(path=_PATHS)
@FUZZ
def test_api_fuzz_data_paths_never_lead_out_of_the_data_folder(attacked, path):
    """Whatever data path a space names, the service accepts it only if it lies inside the cluster's data
    folder once `..` and links are resolved; otherwise 422 and one JSON line, never a 500."""
    data = attacked["data"]
    space = SPACE.replace("metric: val_acc", "data: {dataset: csv, target: y, "
                                             + _yaml_line("path", path) + "}\nmetric: val_acc")
    response = attacked["api"].post("/studies", json={"space": space, "filename": "s.yaml"}, headers=AUTH)
    assert response.status_code != 500, response.text
    if response.status_code == 422:
        _one_json_line(response)
    else:
        assert response.status_code in (201, 503), response.text
        resolved = os.path.realpath(os.path.join(data, os.path.expanduser(path)))
        assert os.path.commonpath([os.path.realpath(data), resolved]) == os.path.realpath(data), (path, resolved)


@given(study_id=_SEGMENT, operation=st.sampled_from([op for op in OPERATIONS if "{study_id}" in op[1]]))
@FUZZ
def test_api_fuzz_answers_about_unknown_studies_never_name_the_store(attacked, study_id, operation):
    """Any study id on any per-study operation: 404 or 422 as one JSON line, and no answer names the
    registry's URL or its file."""
    method, path = operation
    response = attacked["api"].request(method, path.replace("{study_id}", quote(study_id, safe="") or "x"),
                                       headers=AUTH)
    assert response.status_code in (404, 405, 422), (study_id, response.status_code, response.text)
    detail = _one_json_line(response)
    store = attacked["registry_url"]
    assert store not in detail and store.split("///", 1)[1] not in detail, detail
