"""How a trial and a study ended: the judgement every store's record of them rests on."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from service._outcome import StudyOutcome, study_outcome, trial_outcome
from service._states import StudyStatus, TrialLabel


@pytest.mark.parametrize(
    "result, errored, label, reason",
    [
        (None, True, TrialLabel.FAILED, "the trial raised an error"),
        ({}, False, TrialLabel.FAILED, "the trial reported nothing"),
        ({"training_iteration": 3}, False, TrialLabel.FAILED, "the trial never reported 'acc'"),
        ({"acc": math.nan, "training_iteration": 2}, False, TrialLabel.FAILED, "acc was nan in epoch 2"),
        ({"acc": math.inf, "training_iteration": 3}, False, TrialLabel.FAILED, "acc was inf in epoch 3"),
        ({"acc": True, "training_iteration": 3}, False, TrialLabel.FAILED, "acc was True in epoch 3"),
        ({"acc": "0.9", "training_iteration": 3}, False, TrialLabel.FAILED, "acc was '0.9' in epoch 3"),
        ({"acc": 0.9, "training_iteration": 2}, False, TrialLabel.PRUNED, ""),
        ({"acc": 0.9, "training_iteration": 3}, False, TrialLabel.COMPLETED, ""),
        ({"acc": 1, "training_iteration": 4}, False, TrialLabel.COMPLETED, ""),
        ({"acc": 0.9, "training_iteration": 3}, True, TrialLabel.FAILED, "the trial raised an error"),
    ],
)
def test_trial_outcome_judges_the_last_result(result, errored, label, reason):
    outcome = trial_outcome(result, errored, ["acc"], max_epochs=3)
    assert (outcome.label, outcome.reason) == (label, reason)


def test_trial_outcome_values_and_optuna_state():
    completed = trial_outcome({"acc": 0.9, "loss": 0.2, "training_iteration": 3}, False, ["acc", "loss"], 3)
    assert completed.values == [0.9, 0.2] and completed.optuna_state == TrialState.COMPLETE
    assert completed.told_values(multi=True) == [0.9, 0.2] and completed.told_values(multi=False) == 0.9
    pruned = trial_outcome({"acc": 0.9, "loss": 0.2, "training_iteration": 1}, False, ["acc", "loss"], 3)
    assert pruned.optuna_state == TrialState.PRUNED and pruned.told_values(multi=True) is None
    failed = trial_outcome({"acc": 0.9, "training_iteration": 3}, False, ["acc", "loss"], 3)
    assert failed.optuna_state == TrialState.FAIL and failed.reason == "the trial never reported 'loss'"


def _trials(*states: TrialState) -> list:
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    return [create_trial(state=s, value=0.5 if s == TrialState.COMPLETE else None, params={"x": 0.5},
                         distributions=dist) if s != TrialState.RUNNING else
            optuna.trial.FrozenTrial(number=0, state=s, value=None, datetime_start=None, datetime_complete=None,
                                     params={}, distributions={}, user_attrs={}, system_attrs={},
                                     intermediate_values={}, trial_id=0)
            for s in states]


C, P, F, R = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING


@pytest.mark.parametrize(
    "states, kwargs, expected",
    [
        ((C, C, P), {}, StudyOutcome(StudyStatus.SUCCEEDED)),
        ((C, F, F), {"max_failed_trials": 2}, StudyOutcome(StudyStatus.SUCCEEDED)),
        ((C, F, F, F), {"max_failed_trials": 2, "planned": 4},
         StudyOutcome(StudyStatus.FAILED, "3 trials failed, more than max_failed_trials=2")),
        ((P, F, P), {}, StudyOutcome(StudyStatus.FAILED, "no trial completed")),
        ((C, R), {}, StudyOutcome(StudyStatus.STOPPED, "stopped after 1 of 3 trials; `hpsearch resume s1` continues it")),
        ((C,), {"out_of_time": True}, StudyOutcome(StudyStatus.SUCCEEDED)),
        ((C,), {"grid_exhausted": True}, StudyOutcome(StudyStatus.SUCCEEDED)),
        ((), {"out_of_time": True}, StudyOutcome(StudyStatus.FAILED, "no trial completed")),
    ],
)
def test_study_outcome(states, kwargs, expected):
    args = {"planned": 3, "max_failed_trials": None, "out_of_time": False, "grid_exhausted": False, "study_id": "s1",
            **kwargs}
    assert study_outcome(_trials(*states), **args) == expected
