"""The API's request and response bodies (what `/openapi.json` documents)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "1"
MAX_SPACE_BYTES = 256 * 1024  # a space file is a page of YAML (service/space/_yaml.py allows the same)


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space: str = Field(description="The space file's YAML text.", max_length=MAX_SPACE_BYTES)
    # A name, never a location: it only labels error messages and the registry row (see service/api/_routes.py).
    filename: str = Field("space.yaml", description="The file's name (no folders), for error messages.",
                          min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
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


class Deleted(BaseModel):
    id: str
    deleted: dict[str, Any]  # mlflow_runs (how many), optuna_study, tune_folder, log (whether each went)


class Health(BaseModel):
    status: str
    api_version: str


_ERROR_TEXT = {400: "the body is not JSON", 401: "missing or wrong token", 404: "no such study",
               409: "not allowed in the study's state", 422: "invalid input",
               503: "a store or the Ray cluster is unavailable"}


def errors(*codes: int) -> dict:
    """The error answers an operation documents: each `{"detail": "<one line>"}`."""
    return {code: {"model": Error, "description": _ERROR_TEXT[code]} for code in codes}
