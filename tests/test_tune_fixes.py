"""service/_tune_fixes.py: each repair is installed once, what it relies on is still Tune's, and the fault it
repairs no longer happens: a worker that dies as Tune hands it the next trial (tests/test_study_e2e.py, a real
study), a snapshot forced while the last one is being copied (here, with Tune's own checkpoint manager and a
copy that starts late and runs slowly, as on a busy machine)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from ray.train._internal.storage import _FilesystemSyncer
from ray.tune.execution.experiment_state import _ExperimentCheckpointManager
from ray.tune.execution.tune_controller import TuneController

from service import _tune_fixes


def _source(name: str) -> str:
    method = getattr(TuneController, name)
    return inspect.getsource(getattr(method, "__wrapped__", method))


def test_installing_twice_replaces_the_method_once():
    _tune_fixes.install()
    installed = TuneController._trial_task_failure
    _tune_fixes.install()
    assert TuneController._trial_task_failure is installed
    assert getattr(installed, "__wrapped__").__qualname__ == "TuneController._trial_task_failure"


def test_the_dead_reused_worker_repair_still_matches_tunes_controller():
    # If one of these fails, Tune changed how a reused worker's death reaches the controller: read
    # _tune_fixes's docstring, check whether Tune still reports it twice, and drop or adapt the repair.
    assert inspect.signature(getattr(TuneController._trial_task_failure, "__wrapped__",
                                     TuneController._trial_task_failure)).parameters.keys() == {"self", "trial", "exception"}
    # The worker's death, for a trial still waiting (being reset), is reported as a failure of the trial ...
    actor_failed = _source("_actor_failed")
    assert "self._pending_trials" in actor_failed and "self._trial_task_failure(trial, exception=exception)" in actor_failed
    # ... and then the trial lets go of the worker ...
    assert actor_failed.index("_trial_task_failure") < actor_failed.index("self._actor_stopped(tracked_actor)")
    assert "self._trial_to_actor.pop(trial)" in _source("_actor_stopped")
    # ... while the reset's own failure goes to the same method, and a trial marked as being reset never gets a
    # worker again.
    reset = _source("_schedule_trial_reset")
    assert "self._resetting_trials.add(trial)" in reset and "on_error=self._trial_task_failure" in reset
    assert "if trial in self._resetting_trials:\n            return True" in _source("_maybe_reuse_cached_actor")


# -- a snapshot written while the last one is being copied ------------------------------------------------------
# The race, made certain instead of likely: the copy of snapshot 1 lists the staging folder while snapshot 2's
# temporary file is there, and copies after its rename (each step waits for the other, or 2 s at most: with the
# repair, snapshot 2 is written only once the copy has ended, so the copy waits in vain).
def _copy_in_the_race(local_path: str, fs, fs_path: str, exclude=None, *, written, renamed) -> None:
    """A copy of the staging folder as Tune's makes it: list, then copy each file."""
    written.wait(timeout=2)
    names = sorted(os.listdir(local_path))
    renamed.wait(timeout=2)
    for name in names:
        shutil.copyfile(os.path.join(local_path, name), os.path.join(fs_path, name))


class _RacingSyncer(_FilesystemSyncer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.written, self.renamed = threading.Event(), threading.Event()

    def _sync_up_command(self, local_path, uri, exclude=None):
        return _copy_in_the_race, dict(local_path=local_path, fs=None, fs_path=uri, exclude=exclude,
                                       written=self.written, renamed=self.renamed)


def _snapshot(staging: Path, n: int, syncer: _RacingSyncer) -> None:
    """Like Tune's own writes of a snapshot's files: a temporary file renamed into place."""
    tmp = staging / f".{n}-tmp-searcher-state.pkl"
    tmp.write_text(json.dumps({"snapshot": n}))
    if n == 2:
        syncer.written.set()
        syncer.renamed.wait(timeout=0.5)  # the copy has listed the folder by now (without the repair)
    os.replace(tmp, staging / "searcher-state.pkl")
    if n == 2:
        syncer.renamed.set()


@pytest.mark.slow  # seconds: the copy's waits
def test_a_snapshot_forced_right_after_another_waits_for_its_copy(tmp_path, caplog):
    _tune_fixes.install()
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    staging.mkdir()
    storage.mkdir()
    syncer = _RacingSyncer(storage_filesystem=None, sync_period=0)
    manager = _ExperimentCheckpointManager(storage=SimpleNamespace(
        experiment_driver_staging_path=str(staging), experiment_fs_path=str(storage), syncer=syncer),
        checkpoint_period=0)

    with caplog.at_level(logging.WARNING):
        manager.sync_up_experiment_state(lambda: _snapshot(staging, 1, syncer), force=True)
        manager.sync_up_experiment_state(lambda: _snapshot(staging, 2, syncer), force=True)  # two trials checkpointed
        manager.sync_up_experiment_state(lambda: None, force=True, wait=True)

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert json.loads((storage / "searcher-state.pkl").read_text()) == {"snapshot": 2}
    assert [p.name for p in storage.iterdir()] == ["searcher-state.pkl"]


def test_the_snapshot_repair_still_matches_tunes_checkpoint_manager():
    # Tune writes the snapshot (save_fn), and only then waits for the copy under way, and only when forced.
    _tune_fixes.install()
    source = inspect.getsource(_ExperimentCheckpointManager.sync_up_experiment_state.__wrapped__)
    assert source.index("save_fn()") < source.index("wait_for_sync()")
    assert "self._storage.syncer.sync_up(" in source and "self._storage.syncer.wait()" in source
