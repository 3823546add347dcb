"""The API service in process, against a real registry (SQLite and PostgreSQL) and real Optuna storage.

The Ray Jobs API it launches drivers through is, here, an address nobody listens on: what the service does
when the cluster is down is part of what is tested. Launching on a real cluster is in
tests/test_local_cluster_e2e.py.
"""

from __future__ import annotations


import pytest
from fastapi.testclient import TestClient

from service._registry import Registry
from service._settings import resolve_settings
from service._states import StudyStatus
from service.api import ApiConfig, RayJobs, create_app

from support import AUTH, SPACE, TOKEN, api_app as _app

FAILED, RUNNING, STOPPED, SUCCEEDED = StudyStatus.FAILED, StudyStatus.RUNNING, StudyStatus.STOPPED, StudyStatus.SUCCEEDED

@pytest.fixture
def api(tmp_path, registry_url):
    return TestClient(_app(tmp_path, registry_url))


@pytest.fixture
def registry(api, registry_url):
    return Registry(registry_url)


def _study(registry: Registry, status: str = RUNNING, **fields):
    from service._runner import record_study
    from service.space import parse_space

    space = parse_space(SPACE, source="space.yaml", check_data=False)
    settings = resolve_settings(home="/tmp/unused", tracking_uri="sqlite:////tmp/unused-mlflow.db",
                                optuna_storage="sqlite:////tmp/unused-optuna.db", registry_url=registry.url)
    record = record_study(registry, space, settings)
    return registry.update(record.id, status=status, **fields)


# -- authentication -----------------------------------------------------------------------------------------
ENDPOINTS = [
    ("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/studies"), ("POST", "/studies"),
    ("GET", "/studies/x"), ("GET", "/studies/x/logs"), ("POST", "/studies/x/stop"), ("POST", "/studies/x/resume"),
    ("GET", "/studies/x/best"), ("DELETE", "/studies/x"), ("GET", "/no-such-path"),
]


@pytest.mark.parametrize("method,path", ENDPOINTS)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
                         ids=["none", "wrong", "basic-scheme", "token-plus-one", "empty"])  # ids without the token
def test_api_refuses_missing_or_wrong_token(tmp_path, method, path, header):
    api = TestClient(_app(tmp_path, f"sqlite:///{tmp_path / 'r.db'}"))
    headers = {"Authorization": header} if header is not None else {}
    response = api.request(method, path, headers=headers, json={"space": SPACE} if method == "POST" else None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "HPSEARCH_TOKEN" in response.json()["detail"]


def test_api_every_operation_in_the_openapi_document_is_in_the_auth_test(api):
    spec = api.get("/openapi.json", headers=AUTH).json()
    assert spec["security"] == [{"bearer": []}]
    documented = {(method.upper(), path.replace("{study_id}", "x")) for path, ops in spec["paths"].items() for method in ops}
    assert documented == set(ENDPOINTS) - {("GET", "/openapi.json"), ("GET", "/no-such-path")}


def test_api_health(api):
    response = api.get("/healthz", headers=AUTH)
    assert response.status_code == 200 and response.json() == {"status": "ok", "api_version": "1"}


# -- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,expected", [
    ({"space": "name: [unclosed\n", "filename": "mine.yaml"}, "mine.yaml:2: YAML syntax error"),
    ({"space": SPACE.replace("mode: max", "mode: maximum"), "filename": "s.yaml"}, "s.yaml:4: mode"),
    ({"space": SPACE.replace("budget:", "budgett:")}, "budgett"),
    ({"space": SPACE, "overrides": ["budget.trials=-3"]}, "budget.trials"),
    ({"space": SPACE, "colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"filename": "s.yaml"}, "space: Field required"),
    ({"space": "x" * (256 * 1024 + 1)}, "space: String should have at most"),
])
def test_api_rejects_a_bad_space_with_one_clear_line(api, registry, body, expected):
    response = api.post("/studies", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and expected in detail, detail
    assert registry.list() == []  # nothing recorded


def test_api_unknown_study_is_404_naming_it_but_not_the_registry(api, registry_url):
    for method, path in [("GET", "/studies/nope"), ("GET", "/studies/nope/logs"), ("POST", "/studies/nope/stop"),
                         ("POST", "/studies/nope/resume"), ("GET", "/studies/nope/best"), ("DELETE", "/studies/nope")]:
        response = api.request(method, path, headers=AUTH)
        assert response.status_code == 404 and "no study 'nope'" in response.json()["detail"]
        where = registry_url.split("://", 1)[1].split("?")[0]
        assert where not in response.text and "registry" not in response.text


def test_api_list_rejects_unknown_status_and_bad_limit(api):
    assert api.get("/studies?status=done", headers=AUTH).status_code == 422
    assert "limit" in api.get("/studies?limit=0", headers=AUTH).json()["detail"]


def test_api_warm_start_from_unknown_study_is_404(api, registry):
    response = api.post("/studies", json={"space": SPACE, "warm_start": "nope"}, headers=AUTH)
    assert response.status_code == 404 and registry.list() == []


# -- the cluster being down ---------------------------------------------------------------------------------
def test_api_submit_with_ray_down_is_503_and_records_the_failure(api, registry):
    response = api.post("/studies", json={"space": SPACE, "filename": "space.yaml"}, headers=AUTH)
    assert response.status_code == 503
    assert "cannot reach the Ray Jobs API" in response.json()["detail"]
    (record,) = registry.list()
    assert record.status == FAILED and "Ray Jobs API" in record.error
    assert record.space_source == "space.yaml" and record.space_text == SPACE


def test_api_status_answers_from_the_registry_while_ray_is_down(api, registry):
    record = _study(registry, RUNNING, ray_job_id="hpsearch-x-1", n_trials=3, n_completed=2, best_value=0.9)
    response = api.get(f"/studies/{record.id[:-2]}", headers=AUTH)  # a unique prefix
    assert response.status_code == 200
    data = response.json()
    assert (data["id"], data["status"], data["n_completed"], data["trials"]) == (record.id, RUNNING, 2, [])
    assert data["summary"]["study_id"] == record.id and data["summary"]["status"] == RUNNING


# -- stop, resume, best, logs -------------------------------------------------------------------------------
def test_api_stop_of_a_study_without_a_live_driver_marks_it_stopped(api, registry):
    record = _study(registry, "queued")
    response = api.post(f"/studies/{record.id}/stop", headers=AUTH)
    assert response.status_code == 202 and response.json()["status"] == STOPPED
    stored = registry.find_by_id(record.id)
    assert stored.status == STOPPED and stored.stop_requested_at is not None
    assert "stop requested" in api.get(f"/studies/{record.id}/logs", headers=AUTH).json()["text"]


@pytest.mark.parametrize("status", [SUCCEEDED, FAILED, STOPPED])
def test_api_stop_of_a_finished_study_is_409(api, registry, status):
    record = _study(registry, status)
    response = api.post(f"/studies/{record.id}/stop", headers=AUTH)
    assert response.status_code == 409 and f"already {status}" in response.json()["detail"]


def test_api_resume_of_a_succeeded_study_is_409(api, registry):
    record = _study(registry, SUCCEEDED)
    response = api.post(f"/studies/{record.id}/resume", headers=AUTH)
    assert response.status_code == 409 and "already succeeded" in response.json()["detail"]


def test_api_resume_with_ray_down_is_503(api, registry):
    record = _study(registry, STOPPED)
    assert api.post(f"/studies/{record.id}/resume", headers=AUTH).status_code == 503


def test_api_best_before_any_completed_trial_is_409_and_after_it_a_space_to_retrain(api, registry):
    record = _study(registry, RUNNING)
    response = api.get(f"/studies/{record.id}/best", headers=AUTH)
    assert response.status_code == 409 and "no completed trial yet" in response.json()["detail"]
    registry.update(record.id, status=SUCCEEDED, best_value=0.97, best_params={"lr": 0.01})
    best = api.get(f"/studies/{record.id}/best", headers=AUTH).json()
    assert best["best_params"] == {"lr": 0.01} and best["metric"] == "val_acc"
    import yaml

    space = yaml.safe_load(best["space"])
    assert (space["fixed"], space["params"], space["retrain_of"]) == ({"lr": 0.01}, {}, record.id)


def test_api_logs_follow_from_an_offset(api, registry, tmp_path):
    from service._studylog import append_log

    record = _study(registry, RUNNING)
    log = tmp_path / "home" / "logs" / f"{record.id}.log"
    append_log(str(log), "trial 0000 started")
    first = api.get(f"/studies/{record.id}/logs", headers=AUTH).json()
    assert first["text"].endswith("trial 0000 started\n") and first["finished"] is False
    append_log(str(log), "trial 0000 completed")
    with open(log, "a") as fh:
        fh.write("half a li")  # a line being written is not returned until it is whole
    second = api.get(f"/studies/{record.id}/logs?offset={first['offset']}", headers=AUTH).json()
    assert second["text"].endswith("trial 0000 completed\n") and second["text"].count("\n") == 1


def test_api_masks_passwords_in_store_urls(api, registry):
    _study(registry, RUNNING, optuna_storage="postgresql+psycopg2://hpsearch:s3cret@postgres:5432/hpsearch")
    listed = api.get("/studies", headers=AUTH).text
    assert "s3cret" not in listed and "hpsearch:***@postgres" in listed


def test_api_rejects_unknown_query_parameters(api):
    response = api.get("/studies?stauts=running", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"] == "stauts: unknown query parameter; it takes limit, status"


def test_api_status_names_the_mlflow_ui_users_open(tmp_path, registry_url):
    settings = resolve_settings(home=str(tmp_path / "home"), tracking_uri="http://mlflow:5000",
                                optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}", registry_url=registry_url)
    app = create_app(ApiConfig(token=TOKEN, settings=settings, jobs=RayJobs(address="http://127.0.0.1:9"),
                               mlflow_ui_url="http://127.0.0.1:5000"))
    record = _study(Registry(registry_url), SUCCEEDED)
    data = TestClient(app).get(f"/studies/{record.id}", headers=AUTH).json()
    assert data["mlflow_ui_url"] == data["summary"]["mlflow_ui_url"] == "http://127.0.0.1:5000"


def test_api_delete_refuses_an_active_study_and_forgets_a_finished_one(api, registry, tmp_path):
    running = _study(registry, RUNNING)
    response = api.delete(f"/studies/{running.id}", headers=AUTH)
    assert response.status_code == 409 and "stop it first" in response.json()["detail"]
    finished = _study(registry, SUCCEEDED)
    response = api.delete(f"/studies/{finished.id}", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == finished.id and registry.find_by_id(finished.id) is None
    assert api.get(f"/studies/{finished.id}", headers=AUTH).status_code == 404


# -- what an attacker holding the token can and cannot do (the full attack run: tests/test_security_e2e.py) --
@pytest.mark.parametrize("trainable", ["os:system", "subprocess:run", "subprocess:Popen", "builtins:exec",
                                       "this:x", "antigravity:x", "pip.__main__:main", ".relative:x"])
def test_api_refuses_trainables_the_cluster_did_not_admit(api, registry, trainable, monkeypatch):
    monkeypatch.setenv("HPSEARCH_TRAINABLE_MODULES", "mylab.models")
    space = SPACE.replace("trainable: mlp", f'trainable: "{trainable}"').replace("metric: val_acc", "metric: score")
    before = len(registry.list())
    response = api.post("/studies", json={"space": space, "filename": "s.yaml"}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert "HPSEARCH_TRAINABLE_MODULES" in response.json()["detail"] or "package.module:function" in response.json()["detail"]
    assert len(registry.list()) == before  # nothing recorded


@pytest.mark.parametrize("filename", ["/etc/passwd", "../space.yaml", "a/b.yaml", "..", "s\x00.yaml", ".hidden"])
def test_api_filename_is_a_name_never_a_location(api, registry, filename):
    response = api.post("/studies", json={"space": SPACE, "filename": filename}, headers=AUTH)
    assert response.status_code == 422 and response.headers["content-type"] == "application/json"
    assert response.json()["detail"].startswith("filename:")


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.csv", "data/../../outside.csv"])
def test_api_data_paths_stay_inside_the_data_folder(api, registry, path, tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "data"))
    space = SPACE.replace("metric: val_acc", f"data: {{dataset: csv, path: '{path}', target: y}}\nmetric: val_acc")
    before = len(registry.list())
    response = api.post("/studies", json={"space": space, "filename": "s.yaml"}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert "outside the cluster's data folder" in response.json()["detail"]
    assert len(registry.list()) == before


def test_api_unexpected_failure_is_one_json_line(tmp_path):
    app = _app(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")

    def broken(*args, **kwargs):
        raise RuntimeError("postgresql://user:secret@db/hpsearch exploded")

    app.state.studies.list = broken
    response = TestClient(app, raise_server_exceptions=False).get("/studies", headers=AUTH)
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert "incident" in response.json()["detail"] and "secret" not in response.text


def test_api_access_log_drops_query_strings():
    import logging

    from service._serve import drop_query_strings

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/studies?token=s3cr3t", "1.1", 401), None)
    assert drop_query_strings(record) and "s3cr3t" not in record.getMessage()
