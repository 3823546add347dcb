"""One MLflow run per trial, nested under the study's run: a Tune callback in the driver.

The trainables never talk to MLflow. Runs are written through `MlflowClient` (no fluent "active run" state),
so several studies can share one driver process. The callback is pickled into Tune's experiment state and
unpickled on resume, so it keeps only plain values and finds a resumed trial's run again by its
`hpsearch.tune_trial_id` tag.

A resumed or restarted trial redoes the epochs since its last checkpoint; each epoch is logged once (the
first time, as Optuna keeps the first value reported for a step). Tune's saved state can be older than a
trial's end: Tune then runs a trial that had ended again, and that rerun changes nothing in its run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from service._context import StudyContext
from service._optuna import ended_tune_trials, load_study, optuna_number
from service._outcome import FAULT_TRACE_KEY, epochs_reached, is_fault, trial_outcome
from service._report_drawer import ReportDrawer
from service._states import TrialLabel
from service._tracking import (
    PARENT_TAG,
    TAG_RETRIES,
    TAG_GPU_IDS,
    TAG_NODE,
    TAG_NODE_IP,
    TAG_REASON,
    TAG_RUNG,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_TUNE_ID,
    client_for,
    log_params,
    log_study_report,
    trial_params,
    trial_run_name,
)

_NOT_METRICS = set(AUTO_RESULT_KEYS) | {"done", "trial_id", "experiment_tag", "should_checkpoint", "epoch"}


def result_metrics(result: dict) -> dict[str, float]:
    """The trainable's own numbers from a Tune result, without Tune's bookkeeping."""
    return {
        k: float(v)
        for k, v in result.items()
        if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def failure_reason(trial) -> str:
    """The last line of the trial's error: 'TrialDiverged: train_loss became nan in epoch 3; ...'.

    Ray wraps errors as "ray.exceptions.RayTaskError(X): ..."; the last line is the original message."""
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file and os.path.exists(error_file):
        text = Path(error_file).read_text(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "the trial raised an error (no message was recorded)"
    return lines[-1][:500]


def gave_up_reason(trial, retries: int, max_retries: int) -> str:
    """Why Tune gave up on a trial after `retries` restarts: its worker failed once more than max_retries
    allows (lost with its node or process, or failing to restore the trial's checkpoint), and how, last."""
    return worker_gave_up(failure_reason(trial), max_retries, failures=retries + 1)


def worker_gave_up(why: str, max_retries: int, failures: Optional[int] = None) -> str:
    """The words for a trial whose worker failed more often than max_retries allows (`failures` times, when
    counted), and `why`, last."""
    how_often = "more often than" if failures is None else f"{failures} times, more than"
    return f"its worker failed {how_often} max_retries={max_retries} allows: {why}"


class MlflowTrialLogger(Callback):
    """Tune callback: one MLflow child run per trial, with every epoch's metrics and the trial's end state."""

    def __init__(self, ctx: StudyContext, *, report_interval_s: float = 120.0):
        self.ctx = ctx
        self.report_interval_s = report_interval_s  # how often the parent's plots are redrawn while running
        self._reports: Optional[ReportDrawer] = None  # made in setup: a thread does not pickle
        self.name_params = tuple(list(ctx.space.params)[:3])
        self._best: Optional[float] = None  # best completed value so far (single objective)
        self._n_completed = 0
        self._runs: dict[str, str] = {}  # Tune trial id -> MLflow run id
        self._retries: dict[str, int] = {}  # Tune trial id -> restarts after a lost worker
        self._logged: dict[str, int] = {}  # Tune trial id -> last epoch logged in its run
        self._reruns: set[str] = set()  # Tune trials run again though Optuna holds them as ended
        self._ended_before: frozenset[str] = frozenset()  # Tune trials Optuna held as ended as a restore began
        self._client = None
        self._study = None
        # Tune unpickles its callbacks only when it restores a study: a trial may then have a run already that
        # the saved state missed (made after Tune's last save). A first run's new trials have none to look for.
        self._restored = False

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_client"] = state["_study"] = state["_reports"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        """Unpickled: Tune restores a study. The state may be an older hpsearch's: what it lacks keeps __init__'s
        value."""
        self.__init__(state["ctx"], report_interval_s=state.get("report_interval_s", 120.0))
        self.__dict__.update(state)
        self._restored = True
        self._reports = None

    @property
    def client(self):
        if self._client is None:
            self._client = client_for(self.ctx.stores.tracking_uri)
        return self._client

    @property
    def study(self):
        """The study's Optuna study (None until the searcher has made it)."""
        if self._study is None:
            self._study = load_study(self.ctx.optuna_storage, self.ctx.study_id)
        return self._study

    # Tune saves and restores callback state with the experiment checkpoint.
    def get_state(self) -> Optional[dict]:
        return {"runs": dict(self._runs), "best": self._best, "n_completed": self._n_completed,
                "retries": dict(self._retries)}

    def set_state(self, state: dict) -> None:
        self._runs.update(state.get("runs", {}))
        self._retries.update(state.get("retries", {}))
        self._best = state.get("best")
        self._n_completed = state.get("n_completed", 0)

    def run_id_for(self, trial_id: str) -> Optional[str]:
        return self._runs.get(trial_id)

    # -- Tune's calls --------------------------------------------------------------------------------------
    def setup(self, **info) -> None:
        """The study starts (or resumes) on this driver."""
        self._reports = ReportDrawer(self._draw_report, interval_s=self.report_interval_s)
        if self._restored:
            self._ended_before = ended_tune_trials(self.study)

    def on_experiment_end(self, trials: list, **info) -> None:
        """Tune's loop ended: no more redraws (the runner draws the last report with the study's outcome)."""
        if self._reports is not None:
            self._reports.close()

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self._runs.get(trial.trial_id) or (self._find_run(trial.trial_id) if self._restored else None)
        if run_id is not None:  # a resumed or restarted trial keeps its run
            if trial.trial_id in self._ended_before:
                self._reruns.add(trial.trial_id)
                return
            self._runs[trial.trial_id] = run_id
            self._logged[trial.trial_id] = self._last_epoch(run_id)
            self._reopen(run_id, trial)
            return
        number = optuna_number(self.study, trial.trial_id) if self.study is not None else None
        number = len(self._runs) if number is None else number
        run = self.client.create_run(
            self.ctx.experiment_id,
            run_name=trial_run_name(number, trial.config, self.name_params),
            tags={
                PARENT_TAG: self.ctx.parent_run_id,
                TAG_STUDY: self.ctx.study_id,
                TAG_TRIAL: str(number),
                TAG_TUNE_ID: trial.trial_id,
                TAG_STATE: TrialLabel.RUNNING.value,
            },
        )
        self._runs[trial.trial_id] = run.info.run_id
        log_params(self.client, run.info.run_id, trial_params(trial.config))
        if self._retries.get(trial.trial_id):  # its worker was lost before the trial first started
            self.client.set_tag(run.info.run_id, TAG_RETRIES, str(self._retries[trial.trial_id]))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self._runs.get(trial.trial_id)
        step = int(result.get("training_iteration", 0))
        if run_id is None or is_fault(result) or trial.trial_id in self._reruns or step <= self._logged.get(trial.trial_id, 0):
            return
        self._logged[trial.trial_id] = step
        if self._reports is not None:
            self._reports.start()  # its thread waits for a redraw to be asked for and due
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in result_metrics(result).items()]
        tags = [RunTag(TAG_RUNG, str(step))]
        # Where the trial ran: `node_ip` is Tune's; `node_id` and `gpu_ids` the Tuner's (see service/_tuner.py).
        for tag, key in ((TAG_NODE, "node_id"), (TAG_NODE_IP, "node_ip"), (TAG_GPU_IDS, "gpu_ids")):
            if result.get(key):
                tags.append(RunTag(tag, str(result[key])))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        from mlflow.entities import RunTag

        run_id = self._runs.get(trial.trial_id)
        if run_id is None or trial.trial_id in self._reruns:
            return
        result = trial.last_result or {}
        outcome = trial_outcome(result, False, self.ctx.space.metrics, self.ctx.space.budget.max_epochs)
        tags = [RunTag(TAG_STATE, outcome.label.value), RunTag(TAG_RUNG, str(epochs_reached(result)))]
        if outcome.label == TrialLabel.FAILED:
            tags.append(RunTag(TAG_REASON, outcome.reason[:5000]))
        self.client.log_batch(run_id, tags=tags)  # one write, not one per tag
        if result.get(FAULT_TRACE_KEY):
            _log_text(self.client, run_id, "error.txt", str(result[FAULT_TRACE_KEY]))
        self.client.set_terminated(run_id, status="FAILED" if outcome.label == TrialLabel.FAILED else "FINISHED")
        if outcome.label == TrialLabel.COMPLETED and not self.ctx.space.is_multi_objective:
            self._log_best_so_far(outcome.values[0])
        self._request_report()

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        """A lost worker or node: the trial restarts from its checkpoint, in the same run. Counted also when
        the worker was lost before the trial started (no run yet: the run gets the count when it is made), as
        the progress callback counts it on the Optuna study."""
        if trial.trial_id in self._reruns:
            return
        self._retries[trial.trial_id] = self._retries.get(trial.trial_id, 0) + 1
        run_id = self._runs.get(trial.trial_id)
        if run_id is not None:
            self.client.set_tag(run_id, TAG_RETRIES, str(self._retries[trial.trial_id]))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        """Tune gave up on the trial after its worker or node was lost more often than max_retries. (Tune has
        told the searcher first: Optuna holds the trial as failed already.)"""
        from mlflow.entities import RunTag

        run_id = self._runs.get(trial.trial_id)
        if run_id is None or trial.trial_id in self._reruns or trial.trial_id in self._ended_before:
            return  # none, or after a restore a trial that had ended: its run stands
        reason = gave_up_reason(trial, self._retries.get(trial.trial_id, 0), self.ctx.space.budget.max_retries)
        self.client.log_batch(run_id, tags=[
            RunTag(TAG_STATE, TrialLabel.FAILED.value), RunTag(TAG_REASON, reason[:5000]),
            RunTag(TAG_RUNG, str((trial.last_result or {}).get("training_iteration", 0))),
        ])
        error_file = getattr(trial, "error_file", None)
        if error_file and os.path.exists(error_file):
            self.client.log_artifact(run_id, error_file)
        self.client.set_terminated(run_id, status="FAILED")
        self._request_report()

    # -- helpers -------------------------------------------------------------------------------------------
    def _request_report(self) -> None:
        """A trial ended: the report's thread redraws the study's plots, at most every `report_interval_s`."""
        if self._reports is not None:
            self._reports.request()

    def _draw_report(self) -> None:
        """On the report's thread (service/_report_drawer.py); the runner draws the last report."""
        if self.study is not None:
            reports = self._reports
            log_study_report(self.client, self.ctx.parent_run_id, self.study, self.ctx.space.metrics,
                             still_wanted=lambda: reports is None or not reports.closed)

    def _log_best_so_far(self, value: float) -> None:
        """The parent's chart of `best_<metric>_so_far` over completed trials shows the search converging."""
        self._n_completed += 1
        if self._best is None or (value > self._best if self.ctx.mode == "max" else value < self._best):
            self._best = value
        self.client.log_metric(self.ctx.parent_run_id, f"best_{self.ctx.metric}_so_far", self._best,
                               step=self._n_completed)

    def _reopen(self, run_id: str, trial) -> None:
        """The trial runs again in its run. A run that a stopped study closed for a trial that had not started
        yet (service._records.close_trial_runs) says why it ended and may lack params: the reason goes, the
        trial's params are completed."""
        run = self.client.get_run(run_id)
        if TAG_REASON in run.data.tags:
            self.client.delete_tag(run_id, TAG_REASON)
        missing = {k: v for k, v in trial_params(trial.config).items() if k not in run.data.params}
        if missing:
            log_params(self.client, run_id, missing)
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, TAG_STATE, TrialLabel.RUNNING.value)

    def _last_epoch(self, run_id: str) -> int:
        """The last epoch logged in the run (0 for none)."""
        return max((m.step for m in self.client.get_metric_history(run_id, self.ctx.metric)), default=0)

    def _find_run(self, tune_trial_id: str) -> Optional[str]:
        runs = self.client.search_runs(
            [self.ctx.experiment_id],
            filter_string=f"tags.`{TAG_TUNE_ID}` = '{tune_trial_id}' and tags.`{TAG_STUDY}` = '{self.ctx.study_id}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None


def _log_text(client, run_id: str, name: str, text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        client.log_artifact(run_id, str(path))
