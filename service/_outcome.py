"""Judging outcomes: how a trial ended (completed, pruned or failed, and why) and how the study ended.

Plain functions of results and trials, with no store behind them: the searcher, the MLflow logger and the
progress lines all call `trial_outcome`, so the three agree on every trial, and `study_outcome` decides the
status the registry, MLflow and the exit code report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from service._states import StudyStatus, TrialLabel, trial_label

# A trial whose own code raised ends with one last result carrying these (see service/_tuner.py): its error is
# the trial's fault, told apart from a lost worker or node, which Tune retries.
FAULT_KEY = "hpsearch_fault"  # "ValueError: lr too high"
FAULT_TRACE_KEY = "hpsearch_fault_trace"  # the traceback


def is_fault(result: Optional[dict]) -> bool:
    return bool(result) and FAULT_KEY in result


def epochs_reached(result: Optional[dict]) -> int:
    """The epochs a trial trained, from its last result (a fault result comes after the last epoch's)."""
    if not result:
        return 0
    step = int(result.get("training_iteration", 0))
    return step - 1 if is_fault(result) else step


# The Optuna state (its name) a trial is told with, by label; any other label is told FAIL.
_OPTUNA_STATES = {TrialLabel.COMPLETED: "COMPLETE", TrialLabel.PRUNED: "PRUNED"}


@dataclass(frozen=True)
class TrialOutcome:
    label: TrialLabel  # completed, pruned or failed
    values: Optional[list[float]] = None  # the objectives, for a completed trial
    reason: str = ""  # why it failed

    @classmethod
    def as_told(cls, state: str, values: Any) -> "TrialOutcome":
        """The outcome that `optuna_state` (by its name) and `told_values` describe (without its reason)."""
        label = next((label for label, name in _OPTUNA_STATES.items() if name == state), TrialLabel.FAILED)
        return cls(label, values=None if values is None else list(values) if isinstance(values, list) else [values])

    @property
    def optuna_state(self):
        from optuna.trial import TrialState

        return TrialState[_OPTUNA_STATES.get(self.label, "FAIL")]

    def told_values(self, multi: bool) -> Any:
        """What `study.tell` takes: a float for one objective, the list for several, None unless completed."""
        if self.values is None:
            return None
        return list(self.values) if multi else self.values[0]


def trial_outcome(result: Optional[dict], errored: bool, metrics: Sequence[str], max_epochs: int) -> TrialOutcome:
    """How a finished Tune trial ended, from its last result.

    A trial whose code raised is failed with its error; one Tune gave up on (`errored`: its worker or node was
    lost more often than `max_retries`) is failed; one whose last result lacks a metric or holds a non-finite
    one is failed with that reason; one that stopped before `max_epochs` was stopped by the scheduler: pruned."""
    if is_fault(result):
        return TrialOutcome(TrialLabel.FAILED, reason=str(result[FAULT_KEY]))
    if errored or not result:
        return TrialOutcome(TrialLabel.FAILED, reason="the trial raised an error" if errored else "the trial reported nothing")
    values = []
    for name in metrics:
        value = result.get(name)
        if value is None:
            return TrialOutcome(TrialLabel.FAILED, reason=f"the trial never reported {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            epoch = result.get("training_iteration", "?")
            return TrialOutcome(TrialLabel.FAILED, reason=f"{name} was {value!r} in epoch {epoch}")
        values.append(float(value))
    if result.get("training_iteration", 0) < max_epochs:
        return TrialOutcome(TrialLabel.PRUNED)
    return TrialOutcome(TrialLabel.COMPLETED, values=values)


@dataclass(frozen=True)
class StudyOutcome:
    status: StudyStatus
    error: Optional[str] = None


def study_outcome(
    trials: list,
    *,
    planned: int,
    max_failed_trials: Optional[int],
    out_of_time: bool,
    grid_exhausted: bool,
    study_id: str,
    lost: frozenset = frozenset(),
) -> StudyOutcome:
    """succeeded, failed or stopped, judged from the study's own Optuna trials after Tune returned.

    Failed when more trials failed of their own fault than `max_failed_trials` allows (trials in `lost`, failed
    because their workers were lost, do not count), or none completed; stopped when fewer trials finished than
    planned with time left and (for a grid) points left; succeeded otherwise."""
    labels = [trial_label(t.state) for t in trials]
    n_failed = sum(label == TrialLabel.FAILED and t.number not in lost for label, t in zip(labels, trials))
    if max_failed_trials is not None and n_failed > max_failed_trials:
        return StudyOutcome(StudyStatus.FAILED, f"{n_failed} trials failed, more than max_failed_trials={max_failed_trials}")
    finished = sum(label in (TrialLabel.COMPLETED, TrialLabel.PRUNED, TrialLabel.FAILED) for label in labels)
    if finished < planned and not out_of_time and not grid_exhausted:
        return StudyOutcome(
            StudyStatus.STOPPED, f"stopped after {finished} of {planned} trials; `hpsearch resume {study_id}` continues it"
        )
    if TrialLabel.COMPLETED not in labels:
        return StudyOutcome(StudyStatus.FAILED, "no trial completed")
    return StudyOutcome(StudyStatus.SUCCEEDED)
