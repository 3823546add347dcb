"""A trial's epoch checkpoints, kept so that a driver killed at any moment can resume every trial from one.

Tune keeps a trial's newest `KEEP` checkpoints and deletes older ones as soon as a new one is registered, while
its saved experiment state (the list a resume starts from) is written about once a second. A driver killed
between the two leaves a saved state naming checkpoints that are gone and not naming newer ones that exist.
Tune would then fail the trial ("Could not recover from checkpoint as it does not exist on storage anymore"),
and, had its restore worked, crash on deleting a checkpoint that is no longer there.

`TrialCheckpoints` (a Tune callback in the driver) closes that gap:
- every checkpoint carries the training iteration and time of the result it was taken at, in its metadata
  (`.metadata.json`), so that it can be restored without Tune's own record of it;
- when a trial starts again after a restore, Tune's list of its checkpoints is made to agree with the storage.
  If the checkpoint to restore from is gone, the trial's furthest checkpoint on the storage that carries that
  metadata is moved into its place (the path Tune names, so that the checkpoints the trial writes next keep
  their order) and restored with its own iteration; with none, the trial starts again from its first epoch.
  Checkpoints that are gone leave the list; checkpoints on the storage that Tune does not list (reached by a
  lost future, which the trial now redoes) are deleted.
The trial then loses at most the epochs since its furthest checkpoint, never itself.

Tune (2.60) has no public interface to a trial's checkpoint list: `_checkpoint_results` and
`_latest_checkpoint_result` of its checkpoint manager are used, and tests/test_resume_e2e.py proves the repair.
"""

from __future__ import annotations

import logging
import posixpath
import re
from typing import TYPE_CHECKING

from ray.tune import Callback

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

# Checkpoints Tune keeps per trial. One is enough: the metadata is written before Tune registers a checkpoint
# (and deletes the one before it), so the newest registered checkpoint always carries it.
KEEP = 1
METADATA_KEY = "hpsearch.result"  # in a checkpoint's metadata: the result it was taken at
_RESTORE_KEYS = ("training_iteration", "time_total_s")
_NAME = re.compile(r"^checkpoint_(\d+)$")


class TrialCheckpoints(Callback):
    """Tune callback: metadata on every checkpoint; Tune's checkpoint list of a restarting trial checked against
    the storage."""

    def on_checkpoint(self, iteration: int, trials: list, trial: "Trial", checkpoint, **info) -> None:
        result = trial.last_result or {}
        try:
            checkpoint.update_metadata({METADATA_KEY: {k: result[k] for k in _RESTORE_KEYS if k in result}})
        except OSError as exc:  # the checkpoint stands without it; only a repair would have used it
            logger.warning("trial %s: could not mark checkpoint %s: %s", trial.trial_id, checkpoint.path, exc)

    def on_trial_start(self, iteration: int, trials: list, trial: "Trial", **info) -> None:
        repair(trial)


def repair(trial: "Trial") -> None:
    """Make Tune's list of the trial's checkpoints agree with its storage (see the module's docstring)."""
    from ray.tune import Checkpoint

    manager = trial.run_metadata.checkpoint_manager
    latest = manager.latest_checkpoint_result
    if latest is None or latest.checkpoint is None:
        return
    fs, path = latest.checkpoint.filesystem, latest.checkpoint.path
    on_storage = _checkpoint_dirs(fs, posixpath.dirname(path))
    if path not in on_storage:
        saved = {p: Checkpoint(p, filesystem=fs).get_metadata().get(METADATA_KEY) for p in on_storage}
        usable = [p for p, result in saved.items() if result and "training_iteration" in result]
        if usable:
            furthest = max(usable, key=lambda p: saved[p]["training_iteration"])
            fs.move(furthest, path)
            latest.metrics.update(saved[furthest])
            on_storage[path] = on_storage.pop(furthest)
            logger.warning("trial %s: its checkpoint %s was gone; it resumes from the one of iteration %s",
                           trial.trial_id, path, saved[furthest]["training_iteration"])
        else:
            manager._latest_checkpoint_result = None
            logger.warning("trial %s: its checkpoints are gone; it starts again", trial.trial_id)
    listed = [r for r in manager._checkpoint_results if r.checkpoint.path in on_storage]
    if manager.latest_checkpoint_result is not None and manager.latest_checkpoint_result not in listed:
        listed.append(manager.latest_checkpoint_result)
    manager._checkpoint_results = listed
    for stale in set(on_storage) - {r.checkpoint.path for r in listed}:
        fs.delete_dir(stale)


def _checkpoint_dirs(fs, trial_path: str) -> dict[str, int]:
    """The trial's checkpoint directories on the storage, with their index."""
    import pyarrow.fs

    infos = fs.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    found = {}
    for info in infos:
        match = _NAME.match(posixpath.basename(info.path))
        if match and info.type == pyarrow.fs.FileType.Directory:
            found[info.path] = int(match.group(1))
    return found
