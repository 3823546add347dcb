"""Optuna's GridSampler, made safe for ask/tell (how Ray Tune's OptunaSearch drives a study).

GridSampler.after_trial calls `study.stop()` once every grid point was tried, and `stop()` raises
RuntimeError outside `study.optimize()`; under ask/tell that error would surface in `study.tell()` of the
last grid point. The study ends by its trial budget instead, and `is_exhausted()` still tells whether the
grid is done. Imported only by `build_sampler`, since it imports Optuna.
"""

from __future__ import annotations

from optuna.samplers import GridSampler


class AskTellGridSampler(GridSampler):
    def after_trial(self, study, trial, state, values) -> None:
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError:
            pass  # study.stop() called outside study.optimize(): nothing to stop
