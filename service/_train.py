"""Train one configuration fully, outside a search: what `hpsearch train` runs.

The configuration is a space that searches nothing (`budget.trials: 1`, no params: `hpsearch best -o` writes
one from a study's best trial). It trains as one trial on Ray (embedded, or the cluster at `--ray-address`)
with the same trainable and the same config a trial of the study got — its own failures told apart from a
lost worker exactly as in a study — and is recorded as one MLflow run in the space's experiment, tagged
`hpsearch.retrain_of` with the study it came from: the metrics of every epoch, the outcome, the model under
`best_model/`, and with `--register` the model in the Model Registry.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

from ray.tune import Callback

from service._errors import StudyError
from service._outcome import is_fault, trial_outcome
from service._settings import Settings
from service._states import TrialLabel
from service._tracking import TAG_REASON, TAG_STATE, client_for, get_or_create_experiment, log_best_model, log_params
from service._tracking import register_best_model, trial_params
from service._trial_runs import failure_reason, result_metrics, worker_gave_up

TAG_RETRAIN_OF = "hpsearch.retrain_of"


@dataclass(frozen=True)
class TrainingRun:
    """What `hpsearch train` prints (`--json`: this, as one object)."""

    name: str
    state: str  # completed or failed
    metric: str
    value: Optional[float]  # the metric's final value
    epochs: int
    error: Optional[str]
    mlflow_tracking_uri: str
    mlflow_experiment_id: str
    mlflow_run_id: str
    retrain_of: Optional[str]
    registered_model: Optional[str]

    def to_dict(self) -> dict:
        return asdict(self)


def train_once(space, settings: Settings, *, ray_address: Optional[str] = None, register: Optional[str] = None,
               show_progress: bool = True) -> TrainingRun:
    from ray import tune

    from service._ray import connect, quiet_libraries
    from service._tune_fixes import install as install_tune_fixes
    from service._tuner import load_trainable, trainable_target, trial_trainable

    if space.params or space.budget.trials != 1:
        raise StudyError(
            f"{space.source}: `hpsearch train` trains one configuration, but this space searches "
            f"{', '.join(space.params) or 'nothing'} over {space.budget.trials} trials; write the configuration "
            f"with `hpsearch best STUDY_ID -o best.yaml`, or run the search with `hpsearch submit`"
        )
    quiet_libraries()
    install_tune_fixes()
    connect(ray_address, space.source)
    client = client_for(settings.tracking_uri)
    experiment_id = get_or_create_experiment(client, space.name)
    tags = {"hpsearch.role": "train", **({TAG_RETRAIN_OF: space.retrain_of} if space.retrain_of else {})}
    run_id = client.create_run(experiment_id, run_name=f"train {space.name}", tags=tags).info.run_id
    config = space.trial_constants()
    log_params(client, run_id, trial_params(config))
    if show_progress:
        print(f"training {space.name} once ({space.budget.max_epochs} epochs): MLflow run {run_id}", flush=True,
              file=sys.stderr)
    tuner = tune.Tuner(
        tune.with_resources(trial_trainable(load_trainable(trainable_target(space))),
                            {"cpu": space.resources.cpu, "gpu": space.resources.gpu}),
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(
            name=f"train-{space.name}-{int(time.time())}", storage_path=str(settings.home / "train"),
            failure_config=tune.FailureConfig(max_failures=space.budget.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[_EpochLogger(settings.tracking_uri, run_id)], verbose=0,
        ),
    )
    result = tuner.fit()[0]
    return _close(space, settings, client, experiment_id, run_id, result, register)


def _close(space, settings: Settings, client, experiment_id: str, run_id: str, result, register: Optional[str]) -> TrainingRun:
    last = result.metrics or {}
    outcome = trial_outcome(last, result.error is not None, space.metrics, space.budget.max_epochs)
    reason = outcome.reason
    if result.error is not None:
        reason = worker_gave_up(str(result.error), space.budget.max_retries)
    client.set_tag(run_id, TAG_STATE, outcome.label.value)
    registered = None
    if outcome.label == TrialLabel.COMPLETED and result.checkpoint is not None:
        log_best_model(client, run_id, result.checkpoint.path, space, trial=None, value=outcome.values[0], params={})
        if register:
            registered = register_best_model(settings.tracking_uri, run_id, result.checkpoint.path, register)
    if reason and outcome.label == TrialLabel.FAILED:
        client.set_tag(run_id, TAG_REASON, str(reason)[:5000])
    client.set_terminated(run_id, status="FINISHED" if outcome.label == TrialLabel.COMPLETED else "FAILED")
    return TrainingRun(
        name=space.name, state=outcome.label.value, metric=space.metrics[0],
        value=outcome.values[0] if outcome.values else None,
        epochs=int(last.get("training_iteration", 0)) - (1 if is_fault(last) else 0),
        error=reason or None, mlflow_tracking_uri=settings.tracking_uri, mlflow_experiment_id=experiment_id,
        mlflow_run_id=run_id, retrain_of=space.retrain_of, registered_model=registered,
    )


class _EpochLogger(Callback):
    """Every epoch's metrics on the one run (a trial's own error, reported as a last result, is not a metric)."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._client = None

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the experiment's state
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        from mlflow.entities import Metric

        if is_fault(result):
            return
        step, now = int(result.get("training_iteration", 0)), int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in result_metrics(result).items()])

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.client.set_tag(self.run_id, TAG_REASON, failure_reason(trial))
