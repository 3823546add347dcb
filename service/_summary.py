"""The outcome of a study as people and scripts read it: what `hpsearch submit --json` prints, what the API's
status answer holds as `summary`, and what the CLI prints at the end of every study. Built from the registry
row alone, the one place the driver writes the outcome to, so a local study and a cluster study print the
same thing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from service._registry import StudyRecord
from service._settings import mask_url
from service._states import StudyStatus


@dataclass(frozen=True)
class StudySummary:
    study_id: str
    name: str
    status: StudyStatus
    best_value: Optional[float]
    best_params: Optional[dict]
    best_trial: Optional[int]
    metric: Any  # a name, or the list of names for several objectives
    mode: Any
    n_trials: int
    n_completed: int
    n_pruned: int
    n_failed: int
    mlflow_tracking_uri: str
    mlflow_experiment_id: Optional[str]
    mlflow_parent_run_id: Optional[str]
    optuna_storage: str
    optuna_study_name: str
    tune_path: Optional[str]
    error: Optional[str] = None
    pareto_front: Optional[list] = None  # several objectives: [{"trial", "values", "params"}] of the front
    registered_model: Optional[str] = None  # "name/version" in the MLflow Model Registry, with --register

    @classmethod
    def of(cls, record: StudyRecord) -> "StudySummary":
        single = len(record.metrics) == 1
        return cls(
            study_id=record.id,
            name=record.name,
            status=record.status,
            best_value=record.best_value,
            best_params=record.best_params,
            best_trial=record.best_trial,
            metric=record.metrics[0] if single else list(record.metrics),
            mode=record.modes[0] if single else list(record.modes),
            n_trials=record.n_trials,
            n_completed=record.n_completed,
            n_pruned=record.n_pruned,
            n_failed=record.n_failed,
            mlflow_tracking_uri=mask_url(record.mlflow_tracking_uri),
            mlflow_experiment_id=record.mlflow_experiment_id,
            mlflow_parent_run_id=record.mlflow_parent_run_id,
            optuna_storage=mask_url(record.optuna_storage),
            optuna_study_name=record.optuna_study_name,
            tune_path=record.tune_path,
            error=record.error,
            pareto_front=record.pareto_front,
            registered_model=record.registered_model,
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["status"] = str(self.status)
        return data
