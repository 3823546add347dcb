"""Ray Tune's OptunaSearch, made to tell Optuna what really happened to each trial.

Ray 2.60's OptunaSearch tells every trial that ends without an error as COMPLETE, including those ASHA
stopped after one or two epochs, so TPE takes half-trained scores for final ones. Here a trial that ends
before `max_epochs` without an error is told as PRUNED (Optuna then keeps its intermediate values and uses
the last one, as it does for trials its own pruners stop), and a trial whose metric is missing or not finite
is told as FAIL.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)

TUNE_TRIAL_ID_ATTR = "tune_trial_id"  # Optuna user attribute linking a trial to its Tune trial
# What hpsearch calls each final Optuna state (MLflow's `hpsearch.state` tag, the progress lines).
STATE_LABELS = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


class StudySearcher(OptunaSearch):
    """OptunaSearch with truthful final states; see the module docstring."""

    def __init__(self, *, max_epochs: int, **kwargs: Any):
        self.max_epochs = max_epochs  # a trial reporting fewer epochs was stopped early
        self._reported_steps: dict[str, int] = {}  # Tune trial id -> last step told to Optuna
        super().__init__(**kwargs)

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def suggest(self, trial_id: str) -> Optional[dict]:
        config = super().suggest(trial_id)
        self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ID_ATTR, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except RuntimeError as exc:  # the Optuna trial was finished meanwhile (a reconciliation); Tune goes on
            logger.warning("could not report to Optuna for trial %s: %s", trial_id, exc)
        self._reported_steps[trial_id] = result.get("training_iteration", 0)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        # Tune hands the result that ends a trial (the one ASHA stopped it on, or the last epoch) only to
        # on_trial_complete, never to on_trial_result: record it as an intermediate value too, so Optuna
        # has the whole learning curve and a pruned trial's last value.
        if result and not isinstance(self.metric, list):
            step = result.get("training_iteration", 0)
            value = result.get(self.metric)
            if step > self._reported_steps.get(trial_id, 0) and isinstance(value, (int, float)):
                try:
                    ot_trial.report(float(value), step)
                except RuntimeError as exc:  # already finished by a reconciliation
                    logger.warning("could not report to Optuna trial %s: %s", ot_trial.number, exc)
        state, values = final_state(result, error, self.metric, self.max_epochs)
        try:
            self._ot_study.tell(ot_trial, values, state=state)
        except Exception as exc:  # e.g. the trial was already finished by a reconciliation
            logger.warning("could not tell Optuna trial %s as %s: %s", ot_trial.number, state.name, exc)
        self._completed_trials.add(trial_id)


def optuna_number(study: optuna.Study, tune_trial_id: str) -> Optional[int]:
    """The Optuna trial number of a Tune trial (the searcher tags each asked trial with its Tune id)."""
    for t in reversed(study.get_trials(deepcopy=False)):
        if t.user_attrs.get(TUNE_TRIAL_ID_ATTR) == tune_trial_id:
            return t.number
    return None


def final_state(
    result: Optional[dict], error: bool, metric: Any, max_epochs: int
) -> tuple[TrialState, Optional[Any]]:
    """The Optuna state and values a finished Tune trial should be told with."""
    if error or not result:
        return TrialState.FAIL, None
    names = metric if isinstance(metric, list) else [metric]
    values = [result.get(name) for name in names]
    if any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
        return TrialState.FAIL, None
    if result.get("training_iteration", 0) < max_epochs:
        return TrialState.PRUNED, None
    return TrialState.COMPLETE, values if isinstance(metric, list) else values[0]
