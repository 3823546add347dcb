"""Repairs to Ray Tune's controller (Ray 2.60), installed in the driver before its Tuner runs (build_tuner).

Each repair says what goes wrong without it, what it changes, and how to tell that Tune no longer needs it;
tests/test_tune_fixes.py checks that what it relies on is still Tune's, and tests/test_study_e2e.py runs the
fault it repairs.

**A worker lost while Tune hands it the next trial.** With `reuse_actors`, a trial waiting to start gets a
finished trial's worker, which Tune asks to reset. When that worker is dead by then (its node was lost while it
waited between trials), the one death reaches the controller twice: as the worker's failure, on which Tune
requeues the waiting trial (a retry, counted), and as the failed reset, on which Tune finds the trial pending
again and ends it as errored — with retries left, and counting the failure twice. The trial is lost. The repair
drops the second report (a failed reset of a worker whose death the controller has handled: the trial no longer
holds a worker) and takes the trial off Tune's list of trials being reset, which would otherwise keep the
requeued trial from ever getting a worker. Tune no longer needs it when a failed reset of a dead worker reaches
`_trial_task_failure` once, or with the trial still holding the worker.

**A snapshot written while the last one is being copied.** Tune writes its experiment state (its trial list in place,
the searcher's and the callbacks' state each through a temporary file renamed into place) into a staging
folder and copies that folder to the study's storage in a background thread. It writes the next snapshot
without waiting for that copy; a snapshot forced right after another (two trials checkpointing in one step of
Tune's loop) renames its temporary files under a copy that has just listed them, the copy fails (an ERROR and a
traceback on the user's terminal) and the storage keeps a half-copied state until the next copy. The repair
waits for the copy under way before writing the next snapshot: the copy had at least the snapshot interval
to finish, so the wait is short. Tune no longer needs it when `sync_up_experiment_state` waits before `save_fn`.
"""

from __future__ import annotations

import functools
import logging

logger = logging.getLogger(__name__)

_MARK = "_hpsearch_repair"  # set on a replaced method: installing twice replaces nothing twice


def install() -> None:
    """Install every repair into Tune's classes (once per process; idempotent)."""
    _drop_second_report_of_a_dead_reused_worker()
    _write_a_snapshot_after_the_last_copy()


def _drop_second_report_of_a_dead_reused_worker() -> None:
    from ray.exceptions import RayActorError
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController._trial_task_failure
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def _trial_task_failure(self, trial, exception):
        if (isinstance(exception, RayActorError) and trial in self._resetting_trials
                and trial not in self._trial_to_actor):
            # The reset's own report of a worker whose death _actor_failed has handled: the trial is requeued
            # (or, out of retries, ended) already.
            self._resetting_trials.discard(trial)
            logger.debug("trial %s: the worker it was to reuse died (reported already)", trial)
            return None
        return original(self, trial, exception)

    setattr(_trial_task_failure, _MARK, True)
    TuneController._trial_task_failure = _trial_task_failure


def _write_a_snapshot_after_the_last_copy() -> None:
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    original = _ExperimentCheckpointManager.sync_up_experiment_state
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def sync_up_experiment_state(self, save_fn, force: bool = False, wait: bool = False):
        def save_after_the_last_copy() -> None:
            try:
                self._storage.syncer.wait()
            except Exception as exc:  # noqa: BLE001 - the next copy carries the whole state again
                logger.warning("copying the study's saved state to %s failed (%s); the next copy retries",
                               self._storage.experiment_fs_path, exc)
            save_fn()

        return original(self, save_after_the_last_copy, force=force, wait=wait)

    setattr(sync_up_experiment_state, _MARK, True)
    _ExperimentCheckpointManager.sync_up_experiment_state = sync_up_experiment_state
