"""service/_asha.py: the rungs, and DeterministicAsha deciding exactly as Tune's ASHA at concurrency 1."""

from __future__ import annotations

import random

import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from service._asha import DeterministicAsha
from service.space import asha_rungs, judged_epochs


@pytest.mark.parametrize(
    "max_epochs, grace, rf, rungs, judged",
    [
        (15, 1, 3, [1, 3, 9], [1, 3, 9]),
        (9, 1, 3, [1, 3, 9], [1, 3]),
        (27, 3, 3, [3, 9, 27], [3, 9]),
        (20, 5, 2, [5, 10, 20], [5, 10]),
        (10, 1, 2.5, [1, 2.5, 6.25], [1, 3, 7]),
        (3, 3, 3, [3], []),
    ],
)
def test_asha_rungs_are_tunes(max_epochs, grace, rf, rungs, judged):
    assert asha_rungs(max_epochs, grace, rf) == pytest.approx(rungs)
    assert judged_epochs(max_epochs, grace, rf) == judged


class _Trial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("grace, rf", [(1, 3), (2, 2), (1, 2.5)])
def test_deterministic_asha_at_concurrency_1_decides_as_tunes_asha(mode, grace, rf):
    rng = random.Random(0)
    tune_asha = AsyncHyperBandScheduler(metric="m", mode=mode, max_t=12, grace_period=grace, reduction_factor=rf)
    ours = DeterministicAsha(metric="m", mode=mode, max_epochs=12, grace_period=grace, reduction_factor=rf,
                             concurrency=1)
    decisions = []
    for index in range(40):  # trials one after another, each until one of them stops it
        trial = _Trial(f"t{index}")
        tune_asha.on_trial_add(None, trial)
        ours.on_trial_add(None, trial)
        level, slope = rng.random(), rng.random()
        for epoch in range(1, 13):
            result = {"training_iteration": epoch, "m": level + slope * epoch / 12 + rng.gauss(0, 0.05)}
            theirs, mine = tune_asha.on_trial_result(None, trial, result), ours.on_trial_result(None, trial, result)
            assert mine == theirs, (index, epoch)
            decisions.append(mine)
            if mine == TrialScheduler.STOP:
                tune_asha.on_trial_complete(None, trial, result)
                break
    assert decisions.count(TrialScheduler.STOP) == 40 and decisions.count(TrialScheduler.CONTINUE) > 40


def test_deterministic_asha_judges_trial_k_against_trials_up_to_k_minus_c_only():
    asha = DeterministicAsha(metric="m", mode="max", max_epochs=9, grace_period=1, reduction_factor=3, concurrency=2)
    for index in range(3):
        asha.on_trial_add(None, _Trial(f"t{index}"))
    assert asha.judge(1, 1, 0.9) == TrialScheduler.CONTINUE  # t1 may not see t0, even had t0 reported first
    assert asha.judge(0, 1, 0.1) == TrialScheduler.CONTINUE  # the first trial at a rung always goes on
    assert asha.judge(2, 1, 0.05) == TrialScheduler.STOP  # t2 sees t0 (0.1), not t1
