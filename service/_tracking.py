"""MLflow side of a study: one experiment per study name, one parent run per study, one child run per trial.

Everything here runs in the driver, fed by Tune callbacks; trainables never talk to MLflow. Runs are written
through `MlflowClient` (no fluent "active run" state), so several studies can share one driver process.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from service._searcher import STATE_LABELS, final_state

# Tags people filter on in the MLflow UI search box, e.g. `tags."hpsearch.state" = "pruned"`.
TAG_STUDY = "hpsearch.study"
TAG_STATE = "hpsearch.state"  # running | completed | pruned | failed
TAG_RUNG = "hpsearch.rung"  # epochs the trial reached
TAG_TRIAL = "hpsearch.trial"  # Optuna trial number
TAG_TUNE_ID = "hpsearch.tune_trial_id"
TAG_REASON = "hpsearch.fail_reason"
TAG_BEST = "hpsearch.best"
TAG_NODE = "hpsearch.node"  # Ray node id the trial ran on (its last result's)
TAG_NODE_IP = "hpsearch.node_ip"
TAG_GPU_IDS = "hpsearch.gpu_ids"  # the GPUs Ray gave the trial on that node, e.g. "0" or "0,1"; absent without GPUs
TAG_PARETO = "hpsearch.pareto"  # multi-objective: the trial is on the Pareto front
PARENT_TAG = "mlflow.parentRunId"

_RESERVED_CONFIG = ("data", "max_epochs")
_NOT_METRICS = set(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_tag", "should_checkpoint", "epoch"}


def client_for(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def get_or_create_experiment(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def start_parent_run(client, experiment_id: str, study_id: str, space) -> str:
    """The study's run: its settings as params, the space file as an artifact."""
    run = client.create_run(
        experiment_id, run_name=study_id, tags={TAG_STUDY: study_id, "hpsearch.role": "study"}
    )
    params = {
        "trainable": space.trainable,
        "metric": ",".join(space.metrics),
        "mode": ",".join(space.modes),
        "dataset": space.data.dataset,
        "budget.trials": space.budget.trials,
        "budget.max_epochs": space.budget.max_epochs,
        "budget.concurrency": space.budget.concurrency,
        "budget.time": space.budget.time_text or "none",
        "budget.max_failed_trials": "none" if space.budget.max_failed_trials is None else space.budget.max_failed_trials,
        "resources.cpu": space.resources.cpu,
        "resources.gpu": space.resources.gpu,
        "sampler": space.sampler.type,
        "sampler.seed": space.sampler.seed,
        "scheduler": space.scheduler.type,
        "scheduler.grace_period": space.scheduler.grace_period,
        "scheduler.reduction_factor": space.scheduler.reduction_factor,
        "searched": ",".join(space.params),
    }
    for key, value in (space.sampler.options or {}).items():
        params[f"sampler.{key}"] = value
    log_params(client, run.info.run_id, params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(space.text)
        client.log_artifact(run.info.run_id, str(path))
    return run.info.run_id


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(str(k), _param_text(v)) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
        client.log_batch(run_id, params=items[start:start + 100])


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def trial_run_name(number: int, config: dict, names: Iterable[str]) -> str:
    """`trial-0007 lr=0.0031 optimizer=adam maps=32`: scannable in the runs list."""
    parts = [f"trial-{number:04d}"]
    for name in names:
        if name in config:
            parts.append(f"{name}={_short(config[name])}")
    return " ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def trial_params(config: dict) -> dict[str, Any]:
    """What a child run records as params: every hyperparameter the trial got, constants included."""
    return {k: v for k, v in config.items() if k not in _RESERVED_CONFIG}


def result_metrics(result: dict) -> dict[str, float]:
    """The trainable's own numbers from a Tune result, without Tune's bookkeeping."""
    return {
        k: float(v)
        for k, v in result.items()
        if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def failure_reason(trial) -> str:
    """The last line of the trial's error: 'TrialDiverged: train_loss became nan in epoch 3; ...'."""
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file and os.path.exists(error_file):
        text = Path(error_file).read_text(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "the trial raised an error (no message was recorded)"
    reason = lines[-1]
    # Ray wraps errors as "ray.exceptions.RayTaskError(X): ...": the last line is the original message.
    return reason[:500]


class MlflowTrialLogger(Callback):
    """Tune callback: one MLflow child run per trial, nested under the study's parent run.

    It is pickled into Tune's experiment state and unpickled on resume, so it keeps only plain values and
    finds a resumed trial's run again by its `hpsearch.tune_trial_id` tag.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        study_id: str,
        optuna_storage: str,
        optuna_study_name: str,
        metric: Any,
        mode: Any,
        max_epochs: int,
        name_params: tuple[str, ...],
        report_interval_s: float = 120.0,
    ):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.study_id = study_id
        self.optuna_storage = optuna_storage
        self.optuna_study_name = optuna_study_name
        self.metric = metric
        self.mode = mode
        self.max_epochs = max_epochs
        self.report_interval_s = report_interval_s  # how often the parent's plots are redrawn while running
        self._last_report = time.time()
        self._best: Optional[float] = None  # best completed value so far (single objective)
        self._n_completed = 0
        self.name_params = name_params
        self._runs: dict[str, str] = {}  # Tune trial id -> MLflow run id
        self._client = None
        self._study = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_client"] = state["_study"] = None
        return state

    @property
    def client(self):
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    # Tune saves and restores callback state with the experiment checkpoint.
    def get_state(self) -> Optional[dict]:
        return {"runs": dict(self._runs), "best": self._best, "n_completed": self._n_completed}

    def set_state(self, state: dict) -> None:
        self._runs.update(state.get("runs", {}))
        self._best = state.get("best")
        self._n_completed = state.get("n_completed", 0)

    def run_id_for(self, trial_id: str) -> Optional[str]:
        return self._runs.get(trial_id)

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self._runs.get(trial.trial_id) or self._find_run(trial.trial_id)
        if run_id is not None:  # a resumed or restarted trial keeps its run
            self._runs[trial.trial_id] = run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, TAG_STATE, "running")
            return
        number = self._optuna_number(trial.trial_id)
        run = self.client.create_run(
            self.experiment_id,
            run_name=trial_run_name(number, trial.config, self.name_params),
            tags={
                PARENT_TAG: self.parent_run_id,
                TAG_STUDY: self.study_id,
                TAG_TRIAL: str(number),
                TAG_TUNE_ID: trial.trial_id,
                TAG_STATE: "running",
            },
        )
        self._runs[trial.trial_id] = run.info.run_id
        log_params(self.client, run.info.run_id, trial_params(trial.config))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            return
        step = int(result.get("training_iteration", 0))
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in result_metrics(result).items()]
        tags = [RunTag(TAG_RUNG, str(step))]
        # Where the trial ran: `node_ip` is Tune's; `node_id` and `gpu_ids` the runner's (see _reporting_placement).
        for tag, key in ((TAG_NODE, "node_id"), (TAG_NODE_IP, "node_ip"), (TAG_GPU_IDS, "gpu_ids")):
            if result.get(key):
                tags.append(RunTag(tag, str(result[key])))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            return
        state, _ = final_state(trial.last_result, False, self.metric, self.max_epochs)
        label = STATE_LABELS[state]
        self.client.set_tag(run_id, TAG_STATE, label)
        self.client.set_tag(run_id, TAG_RUNG, str(trial.last_result.get("training_iteration", 0)))
        if label == "failed":
            self.client.set_tag(run_id, TAG_REASON, _non_finite_reason(trial.last_result, self.metric))
        self.client.set_terminated(run_id, status="FAILED" if label == "failed" else "FINISHED")
        if label == "completed" and not isinstance(self.metric, list):
            self._log_best_so_far(float(trial.last_result[self.metric]))
        self._refresh_report()

    def _refresh_report(self) -> None:
        """Redraw the study's plots every `report_interval_s` while it runs (the runner draws the last)."""
        if time.time() - self._last_report < self.report_interval_s:
            return
        self._last_report = time.time()
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        log_study_report(self.client, self.parent_run_id, self.study, metrics)

    def _log_best_so_far(self, value: float) -> None:
        """The parent's chart of `best_<metric>_so_far` over completed trials shows the search converging."""
        self._n_completed += 1
        if self._best is None or (value > self._best if self.mode == "max" else value < self._best):
            self._best = value
        self.client.log_metric(self.parent_run_id, f"best_{self.metric}_so_far", self._best, step=self._n_completed)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            return
        self.client.set_tag(run_id, TAG_STATE, "failed")
        self.client.set_tag(run_id, TAG_REASON, failure_reason(trial))
        self.client.set_tag(run_id, TAG_RUNG, str((trial.last_result or {}).get("training_iteration", 0)))
        error_file = getattr(trial, "error_file", None)
        if error_file and os.path.exists(error_file):
            self.client.log_artifact(run_id, error_file)
        self.client.set_terminated(run_id, status="FAILED")
        self._refresh_report()

    def _find_run(self, tune_trial_id: str) -> Optional[str]:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_TUNE_ID}` = '{tune_trial_id}' and tags.`{TAG_STUDY}` = '{self.study_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    @property
    def study(self):
        if self._study is None:
            import optuna

            self._study = optuna.load_study(study_name=self.optuna_study_name, storage=self.optuna_storage)
        return self._study

    def _optuna_number(self, tune_trial_id: str) -> int:
        from service._searcher import optuna_number

        number = optuna_number(self.study, tune_trial_id)
        return len(self._runs) if number is None else number


def _non_finite_reason(result: dict, metric: Any) -> str:
    names = metric if isinstance(metric, list) else [metric]
    for name in names:
        value = result.get(name)
        if value is None:
            return f"the trial never reported {name!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} was {value}"
    return "the trial reported no usable result"


def tag_trial_runs(client, experiment_id: str, study_id: str, numbers: list[int], tag: str) -> None:
    """Set `tag = true` on the child runs of these Optuna trial numbers."""
    wanted = {str(n) for n in numbers}
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_STUDY}` = '{study_id}'", max_results=5000)
    for run in runs:
        if run.data.tags.get(TAG_TRIAL) in wanted:
            client.set_tag(run.info.run_id, tag, "true")


def log_best_model(client, parent_run_id: str, checkpoint_dir: str, space, best_trial) -> None:
    """The best trial's last checkpoint under `best_model/` of the study's run, with what rebuilds it:
    for built-in trainables `trainables.load_model("best_model/checkpoint.pt")` gives the trained model."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        info = {
            "trainable": space.trainable,
            "trial": best_trial.number,
            "metric": space.metrics[0],
            "value": best_trial.value,
            "params": dict(best_trial.params),
            "fixed": dict(space.fixed),
            "data": space.trial_constants()["data"],
            "max_epochs": space.budget.max_epochs,
            "load_with": "trainables.load_model('checkpoint.pt')" if space.trainable_spec else None,
        }
        (Path(tmp) / "model_config.json").write_text(json.dumps(info, indent=2, default=str))
        client.log_artifact(parent_run_id, str(Path(tmp) / "model_config.json"), artifact_path="best_model")
    client.log_artifacts(parent_run_id, checkpoint_dir, artifact_path="best_model")


def register_best_model(tracking_uri: str, parent_run_id: str, checkpoint_dir: str, name: str) -> Optional[str]:
    """Log the best model in MLflow's PyTorch flavour and register it as `name`; returns "name/version"."""
    import mlflow
    import mlflow.pytorch

    from trainables import load_model

    checkpoint = Path(checkpoint_dir) / "checkpoint.pt"
    if not checkpoint.exists():
        return None
    import numpy as np
    import torch

    model = load_model(str(checkpoint))
    shape = torch.load(str(checkpoint), map_location="cpu", weights_only=True)["input_shape"]
    example = np.zeros((1, *shape), dtype=np.float32)  # MLflow traces the model with it; (1, C, H, W) or (1, F)
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=parent_run_id):
        info = mlflow.pytorch.log_model(model, name="model", registered_model_name=name, input_example=example)
    version = getattr(info, "registered_model_version", None)
    return f"{name}/{version}" if version is not None else name


def log_study_report(client, parent_run_id: str, study, metric_names: list[str]) -> None:
    """Optuna plots (HTML and PNG) and trials.csv under `report/` of the study's run; replaces the last
    report. A report that cannot be drawn is logged and skipped: it never fails a study."""
    import logging

    from service._report import write_study_report

    with tempfile.TemporaryDirectory() as tmp:
        try:
            write_study_report(study, tmp, metric_names=metric_names)
        except Exception as exc:  # noqa: BLE001
            logging.getLogger(__name__).warning("could not draw the study report: %s", exc)
            return
        client.log_artifacts(parent_run_id, tmp, artifact_path="report")
