"""The hpsearch API: submit, list, follow, stop, resume and query studies on a cluster.

Every request needs `Authorization: Bearer <HPSEARCH_TOKEN>` — the OpenAPI document too; there is no
anonymous access. Answers are the dicts of service/_studies.py, so the CLI prints the same thing whether it
asks this service or a local registry. Errors are `{"detail": "<one line>"}` with a 4xx (the caller can fix
it) or 503 (a store or the Ray cluster is down).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from dataclasses import dataclass
from typing import Any, Literal, Optional

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError

from service._registry import Registry, RegistryUnavailable, StudyNotFound
from service._states import FINISHED_STATUSES, StudyStatus

QUEUED, RUNNING = StudyStatus.QUEUED, StudyStatus.RUNNING
from service._settings import Settings
from service._studies import (
    StudyConflict,
    best_dict,
    check_resumable,
    logs_dict,
    mark_driver_gone,
    request_stop,
    status_dict,
    study_dict,
)
from service.api._jobs import LIVE_JOB_STATES, JobsUnavailable, RayJobs

logger = logging.getLogger(__name__)

API_VERSION = "1"
MAX_SPACE_BYTES = 256 * 1024  # a space file is a page of YAML (service/space/_load.py allows the same)


@dataclass
class ApiConfig:
    token: str  # what callers present as `Authorization: Bearer ...`
    settings: Settings  # the cluster's stores, as the drivers reach them
    jobs: RayJobs
    mlflow_ui_url: Optional[str] = None  # the MLflow UI as users open it (HPSEARCH_MLFLOW_UI_URL)


# -- request and response bodies ---------------------------------------------------------------------------
class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space: str = Field(description="The space file's YAML text.", max_length=MAX_SPACE_BYTES)
    filename: str = Field("space.yaml", description="The file's name, for error messages.", min_length=1, max_length=255)
    overrides: list[str] = Field(default_factory=list, description="`KEY=VALUE` overrides (`--set`).", max_length=100)
    warm_start: Optional[str] = Field(None, description="Seed the study with the finished trials of this study.", max_length=128)
    register_model: Optional[str] = Field(None, description="Register the best model under this name.", max_length=256)




class Error(BaseModel):
    detail: str


class Study(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    status: str
    n_trials: int
    n_completed: int
    n_pruned: int
    n_failed: int
    best_value: Optional[float] = None
    best_params: Optional[dict[str, Any]] = None
    error: Optional[str] = None


class StudyList(BaseModel):
    studies: list[Study]


class Trial(BaseModel):
    number: int
    state: str
    values: Optional[list[Optional[float]]] = None
    epochs: int
    params: dict[str, Any]
    duration_s: Optional[float] = None
    tune_trial_id: Optional[str] = None


class StudyDetail(Study):
    trials: list[Trial]
    summary: dict[str, Any]


class Logs(BaseModel):
    study_id: str
    text: str
    offset: int
    finished: bool
    status: str


class Best(BaseModel):
    study_id: str
    metric: Any
    best_value: Optional[float] = None
    best_params: dict[str, Any]
    fixed_block: str


class Health(BaseModel):
    status: str
    api_version: str


def _errors(*codes: int) -> dict:
    text = {400: "the body is not JSON", 401: "missing or wrong token", 404: "no such study", 409: "not allowed in the study's state",
            422: "invalid input", 503: "a store or the Ray cluster is unavailable"}
    return {code: {"model": Error, "description": text[code]} for code in codes}


def create_app(config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="hpsearch",
        version=API_VERSION,
        description="Distributed hyperparameter search for PyTorch. Every request needs `Authorization: Bearer "
                    "<HPSEARCH_TOKEN>`.",
        docs_url=None, redoc_url=None, openapi_url=None,  # the document is served below, behind the token
        responses=_errors(401),
        dependencies=[Depends(_no_unknown_query_parameters)],
    )
    registry = Registry(config.settings.registry_url)
    from service._studies import _storage

    # Optuna's tables, made once here rather than by the first drivers at the same time (and the storage the
    # status answers read from, opened once).
    _storage(config.settings.optuna_storage)
    jobs = config.jobs
    settings = config.settings

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), config.token.encode()):
            reason = "missing" if not header else "wrong"
            return JSONResponse(
                {"detail": f"{reason} token: send `Authorization: Bearer <token>` with the service's HPSEARCH_TOKEN"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )
        response = await call_next(request)
        if response.status_code == 405:
            # Starlette names only the first matching route's methods; GET and POST /studies are two routes.
            response.headers["allow"] = ", ".join(_methods_for(app, request.url.path))
        return response

    @app.exception_handler(RequestValidationError)
    async def one_line_validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")) or "request"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(StudyNotFound)
    async def not_found(request: Request, exc: StudyNotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StudyConflict)
    async def conflict(request: Request, exc: StudyConflict):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(JobsUnavailable)
    @app.exception_handler(RegistryUnavailable)
    async def unavailable(request: Request, exc: Exception):
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError):
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unavailable"
        return JSONResponse({"detail": f"the study registry or Optuna storage is unavailable: {reason}"}, status_code=503)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict:
        return _openapi_with_bearer(app)

    @app.get("/healthz", response_model=Health)
    def healthz() -> dict:
        """The service is up and its registry answers."""
        registry.list(limit=1)
        return {"status": "ok", "api_version": API_VERSION}

    @app.get("/studies", response_model=StudyList, responses=_errors(422, 503))
    def list_studies(
        status: Optional[StudyStatus] = Query(None, description="Only studies in this state."),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict:
        """Studies, newest first."""
        return {"studies": [study_dict(r) for r in registry.list(status=status, limit=limit)]}

    @app.post("/studies", status_code=201, response_model=Study, responses=_errors(400, 404, 422, 503))
    def submit(body: SubmitRequest) -> dict:
        """Validate a space (the same checks as `hpsearch validate`), record the study and launch its driver."""
        from service._runner import record_study
        from service.space import SpaceError

        try:
            space = _parse_submitted(body)
        except SpaceError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        if body.warm_start:
            registry.find_or_raise_by_id(body.warm_start)  # 404 now rather than a failed study later
        record = record_study(registry, space, settings, warm_start=body.warm_start, register=body.register_model,
                              source=body.filename)
        return study_dict(_launch(record))

    @app.get("/studies/{study_id}", response_model=StudyDetail, responses=_errors(404, 503))
    def status(study_id: str) -> dict:
        """The study, its trials (state, value, epochs, parameters) and its summary."""
        data = status_dict(_checked(registry.find_or_raise_by_id(study_id)))
        if config.mlflow_ui_url:
            data["mlflow_ui_url"] = data["summary"]["mlflow_ui_url"] = config.mlflow_ui_url
        return data

    @app.get("/studies/{study_id}/logs", response_model=Logs, responses=_errors(404, 422, 503))
    def logs(study_id: str, offset: int = Query(0, ge=0, description="Byte offset to read from.")) -> dict:
        """The study's event log from `offset`; poll with the returned offset to follow it."""
        record = _checked(registry.find_or_raise_by_id(study_id))
        page = logs_dict(record, settings, offset)
        if page["finished"] and not settings.log_path(record.id).exists() and record.ray_job_id:
            # The driver ended before it wrote a line (it could not start): what Ray kept of it is all there is.
            try:
                text = jobs.logs(record.ray_job_id)
            except JobsUnavailable:
                text = ""
            page.update(text=text[offset:], offset=max(offset, len(text)))
        return page

    @app.post("/studies/{study_id}/stop", status_code=202, response_model=Study, responses=_errors(404, 409, 503))
    def stop(study_id: str, force: bool = Query(False, description="End the driver instead of asking it.")) -> dict:
        """Stop gracefully: running trials end with their last checkpoint, the study is marked stopped. The
        driver is asked through the registry and acts within seconds; `force` ends its Ray job instead."""
        record = _checked(registry.find_or_raise_by_id(study_id))
        if record.status not in FINISHED_STATUSES and jobs.state(record.ray_job_id) == "PENDING":
            jobs.stop(record.ray_job_id)  # not started yet: nothing to end gracefully

        def driver_alive(r) -> bool:
            return jobs.state(r.ray_job_id) == "RUNNING"

        return study_dict(request_stop(registry, record, settings, driver_alive=driver_alive, force=force,
                                       end_driver=lambda r: jobs.stop(r.ray_job_id)))

    @app.post("/studies/{study_id}/resume", status_code=202, response_model=Study, responses=_errors(404, 409, 503))
    def resume(study_id: str) -> dict:
        """Continue a stopped or failed study on a new driver; finished trials are not run again."""
        record = _checked(registry.find_or_raise_by_id(study_id))
        check_resumable(record, driver_alive=jobs.state(record.ray_job_id) in LIVE_JOB_STATES)
        # No job id until the new job exists: a status read in between must not judge the old, ended job.
        record = registry.update(record.id, status=QUEUED, stop_requested_at=None, error=None, finished_at=None,
                                 ray_job_id=None)
        return study_dict(_launch(record))

    @app.get("/studies/{study_id}/best", response_model=Best, responses=_errors(404, 409, 503))
    def best(study_id: str) -> dict:
        """The best configuration so far, and a `fixed:` block that retrains it."""
        return best_dict(registry.find_or_raise_by_id(study_id))

    def _launch(record):
        try:
            job_id = jobs.launch(record.id)
        except JobsUnavailable as exc:
            registry.update(record.id, status="failed", error=str(exc), finished_at=_now())
            raise
        return registry.update(record.id, ray_job_id=job_id)

    def _checked(record):
        """A study the registry calls queued or running whose Ray job has ended without closing it (the
        driver crashed, or the head restarted) is closed here as failed, with Ray's reason."""
        if record.status not in (QUEUED, RUNNING) or not record.ray_job_id:
            return record
        try:
            state = jobs.state(record.ray_job_id)
        except JobsUnavailable:  # Ray is down: the registry's word is all there is
            return record
        if state in LIVE_JOB_STATES:
            return record
        registry_now = registry.find_or_raise_by_id(record.id)  # the driver may have closed it meanwhile
        if registry_now.status not in (QUEUED, RUNNING):
            return registry_now
        why = jobs.message(record.ray_job_id) if state else ""
        reason = f"its driver (Ray job {record.ray_job_id}) ended as {state or 'unknown to Ray'}" + (f": {why}" if why else "")
        return mark_driver_gone(registry, registry_now, settings, "failed", reason)

    return app


def _no_unknown_query_parameters(request: Request) -> None:
    """A misspelt query parameter (`?stauts=running`) is an error, not a silently ignored filter."""
    route = request.scope.get("route")
    known = {p.alias for p in route.dependant.query_params} if route is not None else set()
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
        raise RequestValidationError([{"loc": ("query", unknown[0]), "msg": f"unknown query parameter; {takes}"}])


def _methods_for(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at `path` (what a 405's Allow header must list)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in app.routes:
        if getattr(route, "include_in_schema", True) and getattr(route, "methods", None):
            match, _ = route.matches({"type": "http", "path": path, "method": "GET"})
            if match != Match.NONE:
                methods |= set(route.methods)
    return sorted(methods)


def _openapi_with_bearer(app: FastAPI) -> dict:
    """FastAPI's document, declaring the bearer token every operation needs (the middleware enforces it)."""
    if app.openapi_schema is None:
        schema = app.openapi()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "the service's HPSEARCH_TOKEN"}
        }
        schema["security"] = [{"bearer": []}]
        # Validation errors are answered as one line (see one_line_validation_error), not FastAPI's list.
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "422" in operation.get("responses", {}):
                    operation["responses"]["422"] = {
                        "description": "invalid input",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        app.openapi_schema = schema
    return app.openapi_schema


def _parse_submitted(body: SubmitRequest):
    """The space as the driver will parse it: data paths are the cluster's (checked by the driver, which runs
    where the data is), relative ones from HPSEARCH_DATA_DIR."""
    import os

    from service.space import parse_space

    return parse_space(body.space, source=os.path.basename(body.filename), overrides=body.overrides,
                       base_dir=os.environ.get("HPSEARCH_DATA_DIR") or None, check_data=False)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
