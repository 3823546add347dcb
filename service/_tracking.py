"""MLflow side of a study: one experiment per study name, one parent run per study, and what the parent run
holds at the end (the outcome, the best trial and its model, the report). The trial runs nested under it are
written by service/_trial_runs.py.

Everything here runs in the driver; trainables never talk to MLflow. Runs are written through `MlflowClient`
(no fluent "active run" state), so several studies can share one driver process.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from service._states import StudyStatus
from trainables import RESERVED_CONFIG_KEYS

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
TAG_RETRIES = "hpsearch.retries"  # restarts from its checkpoint after its worker or node was lost
TAG_STUDY_STATUS = "hpsearch.status"  # on the parent run: the study's status
TAG_ERROR = "hpsearch.error"  # on the parent run: why the study failed or stopped
# On the parent run: "drawing <token>" while a child process draws the study's last report, then "drawn" or
# "not drawn: <why>" (service/_report_drawer.py).
TAG_LAST_REPORT = "hpsearch.last_report"
REPORT_NOT_WANTED = "the report asked for is no longer the one wanted"  # log_study_report's, when called off
PARENT_TAG = "mlflow.parentRunId"
# MLflow's run status for each way a study ends (a stopped or crashed study can be resumed: KILLED).
RUN_STATUS = {StudyStatus.SUCCEEDED: "FINISHED", StudyStatus.STOPPED: "KILLED", StudyStatus.CRASHED: "KILLED"}

logger = logging.getLogger(__name__)


def client_for(tracking_uri: str) -> "RetryingClient":
    from mlflow.tracking import MlflowClient

    from service._database import use_write_ahead_log

    with _one_opener_at_a_time(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)  # opens the store (once per process and URI)
        use_write_ahead_log(tracking_uri)
    return RetryingClient(client)


@contextmanager
def _one_opener_at_a_time(tracking_uri: str) -> Iterator[None]:
    """For an SQLite store: one process at a time opens it. MLflow creates and upgrades a store's tables when a
    client first opens it, without a lock of its own, so processes opening a new store at the same moment (two
    `hpsearch submit` on a fresh home, or one and `hpsearch status`) failed with "table runs already exists" or
    "duplicate column name": 18 of 24 processes did, in groups of 4 started together. They take turns here, on
    a lock file beside the database (`mlflow.db.lock`); opening a store whose tables are there takes
    milliseconds. A server's store (http://...) is the server's business."""
    import fcntl

    from service._database import sqlite_file

    database = sqlite_file(tracking_uri)
    if database is None or not database.parent.is_dir():
        yield  # nothing to share, or a folder that is not there: MLflow says what is wrong
        return
    try:  # read-only is enough for flock: a store in a folder this user may only read opens as before
        lock = os.open(f"{database}.lock", os.O_RDONLY | os.O_CREAT, 0o600)
    except OSError:  # no lock file, and none may be made here: nothing to take turns on
        yield
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, and by the system if we die
        yield
    finally:
        os.close(lock)


class RetryingClient:
    """An `MlflowClient` whose calls are tried again (0.5 s, 1 s, 2 s, 4 s apart) when MLflow's store could not
    be reached for a moment. MLflow's own HTTP client retries 429 and 5xx answers, but a tracking server whose
    connections to its database were all busy for its pool's timeout answers 400 ("QueuePool limit ... timed
    out"), and a store MLflow opens itself raises TEMPORARILY_UNAVAILABLE: neither was the request's fault,
    and neither did anything, so both are safe to send again. A study then rides out a busy MLflow instead of
    failing on it."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name: str):
        from mlflow.exceptions import MlflowException

        from service._retry import retry

        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            return retry(lambda: attr(*args, **kwargs), on=(MlflowException,), when=store_was_busy,
                         what=f"MLflow's {name}")
        return call


def store_was_busy(exc: BaseException) -> bool:
    """Whether MLflow failed because its store was unreachable for a moment, not because of the request."""
    return getattr(exc, "error_code", None) == "TEMPORARILY_UNAVAILABLE" or "QueuePool limit" in str(exc)


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
            value = config[name]
            parts.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


def trial_params(config: dict) -> dict[str, Any]:
    """What a child run records as params: every hyperparameter the trial got, constants included."""
    return {k: v for k, v in config.items() if k not in RESERVED_CONFIG_KEYS}


def tag_trial_runs(client, experiment_id: str, study_id: str, numbers: list[int], tag: str) -> None:
    """Set `tag = true` on the child runs of these Optuna trial numbers."""
    wanted = {str(n) for n in numbers}
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_STUDY}` = '{study_id}'", max_results=5000)
    for run in runs:
        if run.data.tags.get(TAG_TRIAL) in wanted:
            client.set_tag(run.info.run_id, tag, "true")


def log_best_model(client, run_id: str, checkpoint_dir: str, space, *, trial: Optional[int], value: Optional[float],
                   params: dict) -> None:
    """A trained trial's last checkpoint under `best_model/` of `run_id`, with what rebuilds it: for built-in
    trainables `trainables.load_model("best_model/checkpoint.pt")` gives the trained model."""
    with tempfile.TemporaryDirectory() as tmp:
        info = {
            "trainable": space.trainable,
            "trial": trial,
            "metric": space.metrics[0],
            "value": value,
            "params": dict(params),
            "fixed": dict(space.fixed),
            "data": space.trial_constants()["data"],
            "max_epochs": space.budget.max_epochs,
            "load_with": "trainables.load_model('checkpoint.pt')" if space.trainable_spec else None,
        }
        (Path(tmp) / "model_config.json").write_text(json.dumps(info, indent=2, default=str))
        client.log_artifact(run_id, str(Path(tmp) / "model_config.json"), artifact_path="best_model")
    client.log_artifacts(run_id, checkpoint_dir, artifact_path="best_model")


def register_best_model(tracking_uri: str, parent_run_id: str, checkpoint_dir: str, name: str) -> Optional[str]:
    """Log the best model in MLflow's PyTorch flavour (`torch.export`, no pickled code) on the study's run and
    register it as `name`; returns "name/version". The model serves any batch size (see `serving_example`)."""
    import mlflow
    import mlflow.pytorch

    from trainables import load_model

    checkpoint = Path(checkpoint_dir) / "checkpoint.pt"
    if not checkpoint.exists():
        return None
    model = load_model(str(checkpoint))
    mlflow.set_tracking_uri(tracking_uri)
    with warnings.catch_warnings(), mlflow.start_run(run_id=parent_run_id):
        # torch.export's notes on the dynamic batch dimension it chose are for torch's developers, not ours.
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.pytorch.log_model(model, name="model", registered_model_name=name,
                                        input_example=serving_example(str(checkpoint)))
    version = getattr(info, "registered_model_version", None)
    return f"{name}/{version}" if version is not None else name


def serving_example(checkpoint_file: str, batch: int = 2):
    """The input example MLflow exports the model with: a few rows of the model's input shape.

    `torch.export` makes a size-1 dimension a constant, so an example batch of 1 exports a model that refuses
    any other batch size; a batch of 2 leaves the batch dimension dynamic (1 and up). Seeded values rather than
    zeros, so that nothing in the traced graph depends on a constant input."""
    import numpy as np
    import torch

    shape = torch.load(checkpoint_file, map_location="cpu", weights_only=True)["input_shape"]
    return np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)  # (B, C, H, W) or (B, F)


def log_study_report(client, parent_run_id: str, study, metric_names: list[str],
                     still_wanted: Optional[Callable[[], bool]] = None) -> Optional[str]:
    """Optuna plots (HTML and PNG) and trials.csv under `report/` of the study's run; replaces the last
    report. A report that cannot be drawn is logged and skipped: it never fails a study. `still_wanted`, asked
    between drawing and uploading, may call the upload off. Returns why nothing was uploaded, or None."""
    from service._report import write_study_report

    with tempfile.TemporaryDirectory() as tmp:
        try:
            write_study_report(study, tmp, metric_names=metric_names)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not draw the study report: %s", exc)
            return f"could not draw the study report: {exc}"
        if still_wanted is not None and not still_wanted():
            return REPORT_NOT_WANTED
        client.log_artifacts(parent_run_id, tmp, artifact_path="report")
    return None


def record_outcome(client, parent_run_id: str, status: StudyStatus, counts: dict[str, int], error: Optional[str]) -> None:
    """The study's status, trial counts and error on its run, which then ends (KILLED when it can resume)."""
    client.set_tag(parent_run_id, TAG_STUDY_STATUS, str(status))
    for key in ("n_trials", "n_completed", "n_pruned", "n_failed"):
        client.log_metric(parent_run_id, key, counts.get(key, 0))
    if error:
        client.set_tag(parent_run_id, TAG_ERROR, error[:5000])
    client.set_terminated(parent_run_id, status=RUN_STATUS.get(status, "FAILED"))


def record_best(client, experiment_id: str, parent_run_id: str, study_id: str, metric: str, best) -> None:
    """The best completed trial on the study's run (`best_<metric>`, its number and params, `best.json`) and
    `hpsearch.best = true` on its own run."""
    params = dict(best.params)
    client.log_metric(parent_run_id, f"best_{metric}", best.value)
    client.set_tag(parent_run_id, "hpsearch.best_trial", str(best.number))
    client.set_tag(parent_run_id, "hpsearch.best_params", json.dumps(params, sort_keys=True)[:5000])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.json"
        path.write_text(json.dumps({"value": best.value, "metric": metric, "trial": best.number, "params": params}, indent=2))
        client.log_artifact(parent_run_id, str(path))
    tag_trial_runs(client, experiment_id, study_id, [best.number], TAG_BEST)


def record_pareto_front(client, experiment_id: str, parent_run_id: str, study_id: str, front: list[dict]) -> None:
    numbers = [point["trial"] for point in front]
    tag_trial_runs(client, experiment_id, study_id, numbers, TAG_PARETO)
    client.set_tag(parent_run_id, "hpsearch.pareto_trials", ",".join(str(n) for n in numbers))
