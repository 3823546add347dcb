"""service/_tune_fixes.py: each repair is installed once, and what it relies on is still Tune's. The fault it
repairs runs in tests/test_study_e2e.py (a worker that dies as Tune hands it the next trial)."""

from __future__ import annotations

import inspect

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
