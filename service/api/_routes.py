"""The API's operations: each parses its input, calls one `ClusterStudies` verb, and returns its dict."""

from __future__ import annotations

import os
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from service._states import StudyStatus
from service.api._cluster import ClusterStudies
from service.api._models import API_VERSION, Best, Deleted, Health, Logs, Study, StudyDetail, StudyList, SubmitRequest, errors

router = APIRouter()


def studies(request: Request) -> ClusterStudies:
    """The cluster's studies (one per app, made by create_app)."""
    return request.app.state.studies


def mlflow_ui_url(request: Request) -> Optional[str]:
    return request.app.state.config.mlflow_ui_url


@router.get("/healthz", response_model=Health)
def healthz(cluster: ClusterStudies = Depends(studies)) -> dict:
    """The service is up and its registry answers."""
    cluster.registry.list(limit=1)
    return {"status": "ok", "api_version": API_VERSION}


@router.get("/studies", response_model=StudyList, responses=errors(422, 503))
def list_studies(
    status: Optional[StudyStatus] = Query(None, description="Only studies in this state."),
    limit: int = Query(100, ge=1, le=1000),
    cluster: ClusterStudies = Depends(studies),
) -> dict:
    """Studies, newest first."""
    return {"studies": cluster.list(status=status, limit=limit)}


@router.post("/studies", status_code=201, response_model=Study, responses=errors(400, 404, 422, 503))
def submit(body: SubmitRequest, cluster: ClusterStudies = Depends(studies)):
    """Validate a space (the same checks as `hpsearch validate`, but the trainable is checked against the
    cluster's admission policy by name only: this service never imports a submitted module), record the study
    and launch its driver."""
    from service.space import SpaceError, TrainablePolicy, parse_space

    data_dir = os.environ.get("HPSEARCH_DATA_DIR") or None
    try:
        # The data paths are the cluster's: the driver, which runs where the data is, checks the files;
        # relative ones start at HPSEARCH_DATA_DIR, and none may lead out of it.
        space = parse_space(body.space, source=body.filename, overrides=body.overrides, base_dir=data_dir,
                            check_data=False, trainables=TrainablePolicy.from_env())
    except SpaceError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    outside = data_paths_outside(space, data_dir)
    if outside:
        return JSONResponse({"detail": outside}, status_code=422)
    return cluster.submit(space, warm_start=body.warm_start, register=body.register_model)


def data_paths_outside(space, data_dir: Optional[str]) -> Optional[str]:
    """Why a submitted space's data paths are refused (one line), or None: every path must lie inside the
    cluster's data folder once `..` and links are resolved."""
    for key in ("root", "path"):
        value = getattr(space.data, key)
        if value is None:
            continue
        if not data_dir:
            return (f"{space.source}: data.{key} {value!r}: this service has no data folder (HPSEARCH_DATA_DIR), so a "
                    f"space sent to it cannot name files; use a built-in dataset such as digits")
        root = os.path.realpath(data_dir)
        if os.path.commonpath([root, os.path.realpath(value)]) != root:
            return (f"{space.source}: data.{key} {value!r} is outside the cluster's data folder; give a path "
                    f"relative to it (the files under {data_dir})")
    return None


@router.get("/studies/{study_id}", response_model=StudyDetail, responses=errors(404, 503))
def status(study_id: str, cluster: ClusterStudies = Depends(studies), ui: Optional[str] = Depends(mlflow_ui_url)) -> dict:
    """The study, its trials (state, value, epochs, parameters) and its summary."""
    data = cluster.status(study_id)
    if ui:
        data["mlflow_ui_url"] = data["summary"]["mlflow_ui_url"] = ui
    return data


@router.get("/studies/{study_id}/logs", response_model=Logs, responses=errors(404, 422, 503))
def logs(study_id: str, offset: int = Query(0, ge=0, description="Byte offset to read from."),
         cluster: ClusterStudies = Depends(studies)) -> dict:
    """The study's event log from `offset`; poll with the returned offset to follow it."""
    return cluster.logs(study_id, offset)


@router.post("/studies/{study_id}/stop", status_code=202, response_model=Study, responses=errors(404, 409, 503))
def stop(study_id: str, force: bool = Query(False, description="End the driver instead of asking it."),
         cluster: ClusterStudies = Depends(studies)) -> dict:
    """Stop gracefully: running trials end with their last checkpoint, the study is marked stopped. The
    driver is asked through the registry and acts within seconds; `force` ends its Ray job instead."""
    return cluster.stop(study_id, force=force)


@router.post("/studies/{study_id}/resume", status_code=202, response_model=Study, responses=errors(404, 409, 503))
def resume(study_id: str, cluster: ClusterStudies = Depends(studies)) -> dict:
    """Continue a stopped, failed or crashed study on a new driver; finished trials are not run again."""
    return cluster.resume(study_id)


@router.get("/studies/{study_id}/best", response_model=Best, responses=errors(404, 409, 503))
def best(study_id: str, cluster: ClusterStudies = Depends(studies)) -> dict:
    """The best configuration so far, and a `fixed:` block that retrains it."""
    return cluster.best(study_id)


@router.delete("/studies/{study_id}", response_model=Deleted, responses=errors(404, 409, 503))
def delete(study_id: str, cluster: ClusterStudies = Depends(studies)) -> dict:
    """Forget a finished study: its MLflow runs (MLflow's delete), Optuna study, checkpoints, log and record."""
    return cluster.delete(study_id)
