"""The words for where a study and a trial stand: one table each, used by the registry, the CLI, the API,
the progress lines and the MLflow tags.

Both enums are `str` subclasses, so a value compares equal to its word (`StudyStatus.RUNNING == "running"`),
serialises to JSON as the word, and is stored in the registry as the word.
"""

from __future__ import annotations

from enum import Enum


class StudyStatus(str, Enum):
    """A study's status, in the order a study moves through them."""

    QUEUED = "queued"  # recorded; its driver is launched but has not started the study yet
    RUNNING = "running"  # a driver runs it
    SUCCEEDED = "succeeded"  # every planned trial finished (or the grid ran out) and one completed
    FAILED = "failed"  # the study itself failed: too many failed trials, none completed, or an error
    STOPPED = "stopped"  # stopped on request (Ctrl-C, `hpsearch stop`); `hpsearch resume` continues it
    CRASHED = "crashed"  # its driver died without closing it; `hpsearch resume` continues it

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """No driver works on the study any more (it may still be resumed)."""
        return self not in (StudyStatus.QUEUED, StudyStatus.RUNNING)

    @property
    def resumable(self) -> bool:
        return self in (StudyStatus.FAILED, StudyStatus.STOPPED, StudyStatus.CRASHED)


ACTIVE_STATUSES = (StudyStatus.QUEUED, StudyStatus.RUNNING)
FINISHED_STATUSES = tuple(s for s in StudyStatus if s.finished)


class TrialLabel(str, Enum):
    """What hpsearch calls a trial's state: the `hpsearch.state` tag in MLflow, the progress lines, the trial
    table of `hpsearch status`."""

    RUNNING = "running"
    COMPLETED = "completed"  # ran every epoch and reported finite metrics
    PRUNED = "pruned"  # stopped early by the scheduler (ASHA)
    FAILED = "failed"  # raised, ran out of memory, or reported a non-finite metric
    WAITING = "waiting"  # asked for, not started
    INTERRUPTED = "interrupted"  # left running by a driver that is gone; `hpsearch resume` continues it

    def __str__(self) -> str:
        return self.value


# Optuna's TrialState names -> our words. Keyed by name so that reading a label needs no Optuna import.
_BY_OPTUNA_STATE = {
    "COMPLETE": TrialLabel.COMPLETED,
    "PRUNED": TrialLabel.PRUNED,
    "FAIL": TrialLabel.FAILED,
    "RUNNING": TrialLabel.RUNNING,
    "WAITING": TrialLabel.WAITING,
}


def trial_label(optuna_state) -> TrialLabel:
    """The label of an Optuna `TrialState` (or its name)."""
    return _BY_OPTUNA_STATE[getattr(optuna_state, "name", optuna_state)]
