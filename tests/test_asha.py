"""service/_asha.py: the rungs, and Asha deciding exactly as Tune's ASHA (one bracket, or each bracket alone), and
within its window in deterministic mode."""

from __future__ import annotations

import random

import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from service._asha import Asha
from service.space import asha_rungs, judged_epochs, max_brackets


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
    def __init__(self, trial_id: str, experiment_tag: str = ""):
        self.trial_id, self.experiment_tag = trial_id, experiment_tag
        self.status, self.last_result = "PENDING", {}  # a new trial, as Tune adds it


@pytest.mark.parametrize("window", [1, None])
@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("grace, rf", [(1, 3), (2, 2), (1, 2.5)])
def test_asha_one_trial_at_a_time_decides_as_tunes_asha(mode, grace, rf, window):
    rng = random.Random(0)
    tune_asha = AsyncHyperBandScheduler(metric="m", mode=mode, max_t=12, grace_period=grace, reduction_factor=rf)
    ours = Asha(metric="m", mode=mode, max_epochs=12, grace_period=grace, reduction_factor=rf, window=window)
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
    asha = Asha(metric="m", mode="max", max_epochs=9, grace_period=1, reduction_factor=3, window=2)
    for index in range(3):
        asha.on_trial_add(None, _Trial(f"t{index}"))
    assert asha.judge(1, 1, 0.9) == TrialScheduler.CONTINUE  # t1 may not see t0, even had t0 reported first
    assert asha.judge(0, 1, 0.1) == TrialScheduler.CONTINUE  # the first trial at a rung always goes on
    assert asha.judge(2, 1, 0.05) == TrialScheduler.STOP  # t2 sees t0 (0.1), not t1


def _interleaved(n_trials: int, in_flight: int, max_epochs: int, seed: int):
    """(trial index, epoch, value) in an order trials running `in_flight` at a time could report in: each
    step, one of the running trials (chosen at random) reports its next epoch. The caller says when one stops."""
    rng = random.Random(seed)
    shape = [(rng.random(), rng.random()) for _ in range(n_trials)]
    running, next_index, epoch = [], 0, {}
    while running or next_index < n_trials:
        while len(running) < in_flight and next_index < n_trials:
            running.append(next_index)
            epoch[next_index] = 0
            next_index += 1
        k = rng.choice(running)
        epoch[k] += 1
        level, slope = shape[k]
        stopped = yield k, epoch[k], level + slope * epoch[k] / max_epochs + rng.gauss(0, 0.05)
        if stopped or epoch[k] >= max_epochs:
            running.remove(k)


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("brackets", [1, 2, 3, 4])
@pytest.mark.parametrize("grace, rf", [(1, 3), (1, 2), (2, 2.5)])
def test_asha_brackets_dealt_in_turn_each_decide_as_tunes_asha_with_the_brackets_grace(brackets, grace, rf, mode):
    """Trials in flight three at a time, results in a random order: bracket b (trials k with k % brackets == b)
    decides exactly as Tune's one-bracket ASHA with grace_period grace * rf**b fed only that bracket's trials.
    At 4 brackets with rf 3 the last judges nowhere."""
    max_epochs = 12
    ours = Asha(metric="m", mode=mode, max_epochs=max_epochs, grace_period=grace, reduction_factor=rf,
                brackets=brackets)
    # (a bracket whose grace passes max_epochs judges nowhere: as Tune's with grace max_epochs, which it refuses past)
    tunes = [AsyncHyperBandScheduler(metric="m", mode=mode, max_t=max_epochs,
                                     grace_period=min(grace * rf ** b, max_epochs), reduction_factor=rf)
             for b in range(brackets)]
    trials, stops = {}, [0] * brackets
    steps = _interleaved(60, 3, max_epochs, seed=brackets)
    k, epoch, value = next(steps)
    while True:
        while k not in trials:  # trials start in index order: add every one started by now, in that order
            j = len(trials)
            trials[j] = _Trial(f"t{j}")
            ours.on_trial_add(None, trials[j])
            tunes[j % brackets].on_trial_add(None, trials[j])
        result = {"training_iteration": epoch, "m": value}
        mine = ours.on_trial_result(None, trials[k], result)
        assert mine == tunes[k % brackets].on_trial_result(None, trials[k], result), (k, epoch)
        if mine == TrialScheduler.STOP and epoch < max_epochs:
            stops[k % brackets] += 1
        try:
            k, epoch, value = steps.send(mine == TrialScheduler.STOP)
        except StopIteration:
            break
    judging = [b for b in range(brackets) if judged_epochs(max_epochs, grace, rf, b)]
    assert all(stops[b] > 0 for b in judging), stops  # every bracket that judges stopped some of its trials


def test_asha_last_of_the_most_brackets_never_stops_a_trial_early():
    most = max_brackets(27, 1, 3)
    assert most == 4 and judged_epochs(27, 1, 3, bracket=most - 1) == []
    asha = Asha(metric="m", mode="max", max_epochs=27, grace_period=1, reduction_factor=3, brackets=most)
    for k in range(4 * most):
        asha.on_trial_add(None, _Trial(f"t{k}"))
    for k in range(4 * most):  # ever worse trials: the judging brackets stop all but their first
        decisions = [asha.judge(k, epoch, 1.0 - k / 100) for epoch in range(1, 27)]
        stopped = TrialScheduler.STOP in decisions
        assert stopped == (k % most != most - 1 and k >= most), (k, decisions)


def test_asha_in_a_window_judges_against_its_own_brackets_earlier_trials_only():
    asha = Asha(metric="m", mode="max", max_epochs=9, grace_period=1, reduction_factor=3, brackets=2, window=2)
    for index in range(6):
        asha.on_trial_add(None, _Trial(f"t{index}"))
    assert asha.judge(1, 3, 0.9) == TrialScheduler.CONTINUE  # bracket 1 (rungs 3, 9): the first at epoch 3
    assert asha.judge(0, 1, 0.5) == TrialScheduler.CONTINUE  # bracket 0: the first at epoch 1
    assert asha.judge(3, 3, 0.1) == TrialScheduler.STOP  # bracket 1, sees t1 (0.9)
    assert asha.judge(2, 1, 0.4) == TrialScheduler.STOP  # bracket 0, sees t0 (0.5), not t1
    assert asha.judge(4, 1, 0.47) == TrialScheduler.CONTINUE  # sees t0, t2 (0.5, 0.4): cutoff 0.4667
    assert asha.judge(5, 3, 0.5) == TrialScheduler.STOP  # sees t1, t3 (0.9, 0.1): cutoff 0.6333


def _tagged(k: int) -> _Trial:
    """Trial k as Tune's search generator tags it (counting from 1)."""
    return _Trial(f"id{k}", experiment_tag=f"{k + 1}_lr=0.1")


def test_asha_trial_added_again_after_a_lost_worker_keeps_its_bracket_and_is_not_judged_twice():
    asha = Asha(metric="m", mode="max", max_epochs=27, grace_period=1, reduction_factor=3, brackets=4)
    trials = [_tagged(k) for k in range(8)]
    for trial in trials:
        asha.on_trial_add(None, trial)
    for k in (0, 1, 2, 4):  # bracket 0's trials 0 and 4 record at epochs 1 and 3
        asha.on_trial_result(None, trials[k], {"training_iteration": 1, "m": 0.9 - k / 100})
    asha.on_trial_result(None, trials[0], {"training_iteration": 3, "m": 0.95})
    asha.on_trial_add(None, trials[3])  # Tune requeues trial 3 (bracket 3: never judged) after a lost worker
    asha.on_trial_add(None, trials[4])  # and trial 4, which passed epoch 1 already
    assert [asha.bracket_of(asha._order[t.trial_id]) for t in trials] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert all(asha.on_trial_result(None, trials[3], {"training_iteration": e, "m": 0.0}) == TrialScheduler.CONTINUE
               for e in range(1, 27))
    # Trial 4 is not judged at epoch 1 again (it would be stopped: 0.1 is below trial 0's 0.9 there).
    assert asha.on_trial_result(None, trials[4], {"training_iteration": 2, "m": 0.1}) == TrialScheduler.CONTINUE


def test_asha_resumed_study_re_adding_trials_newest_first_keeps_every_trial_in_its_bracket():
    """Tune re-adds a resumed study's trials sorted by their last result, newest first; a trial's bracket and
    window position come from the order it was created in."""
    asha = Asha(metric="m", mode="max", max_epochs=27, grace_period=1, reduction_factor=3, brackets=4, window=2)
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    for k in order:
        asha.on_trial_add(None, _tagged(k))
    assert {k: asha.bracket_of(asha._order[f"id{k}"]) for k in order} == {k: k % 4 for k in order}
    assert all(asha._order[f"id{k}"] == k for k in order)


def test_asha_reads_back_the_deterministic_asha_a_study_saved_before_brackets():
    """Tune pickles a study's scheduler; a deterministic study saved before `brackets` holds a DeterministicAsha
    with one flat list of rungs, a list of records and its concurrency. It resumes as one bracket in that window."""
    import pickle

    from service._asha import DeterministicAsha, RungRecord

    old = DeterministicAsha.__new__(DeterministicAsha)
    first = RungRecord([1, 3, 9])
    first.values[1] = 0.5
    old.__dict__.update({"_metric": "m", "_sign": 1.0, "_max_epochs": 9, "_rf": 3, "_concurrency": 2,
                         "_milestones": [1, 3, 9], "_order": {"t0": 0, "t1": 1}, "_records": [first, RungRecord([1, 3, 9])]})
    restored = pickle.loads(pickle.dumps(old))
    restored.on_trial_add(None, _Trial("t2"))
    assert restored.judge(1, 1, 0.1) == TrialScheduler.CONTINUE  # t1 may not see t0 (window 2)
    assert restored.judge(2, 1, 0.4) == TrialScheduler.STOP  # t2 sees t0 (0.5)


_CURVES: dict[str, dict[int, float]] = {}  # the learning curves the searcher told "Optuna", by Tune trial id
_ENDED: set[str] = set()  # the Tune trials "Optuna" holds as ended


class _Curves:
    """What StudyCurves is to a study's Optuna storage: a reader of curves kept outside the scheduler."""

    def __call__(self):
        from service._optuna import LearningCurves

        return LearningCurves(_CURVES, frozenset(_ENDED))


class _Unreachable:
    def __call__(self):
        raise ConnectionError("the Optuna storage is down")


def _as_tune_restores_it(asha: Asha) -> Asha:
    """The scheduler as Tune restores it on resume: unpickled from what it pickled at the study's start."""
    import pickle

    return pickle.loads(pickle.dumps(asha))


class _Restored(_Trial):
    """A trial as Tune adds it back to a resumed study: its status and the last result Tune saved for it."""

    def __init__(self, k: int, status: str, last_epoch: int):
        super().__init__(f"id{k}", experiment_tag=f"{k + 1}_lr=0.1")
        self.status, self.last_result = status, ({"training_iteration": last_epoch} if last_epoch else {})


@pytest.mark.parametrize("brackets, window, mode, rf", [(1, None, "max", 3), (3, None, "max", 3), (2, 2, "max", 3),
                                                        (1, None, "min", 3), (2, None, "max", 2.5)])
def test_asha_resumed_from_what_tune_pickled_at_the_start_decides_as_the_one_that_never_stopped(brackets, window, mode,
                                                                                                 rf):
    """Tune restores the scheduler it pickled when the study started (no values at any rung). Every trial it adds
    back replays its learning curve (what the searcher told Optuna) up to the last result Tune saved for it; what
    the curve holds past that (reported after Tune's last save) is judged again. From there on, the resumed
    scheduler decides exactly as one that ran through, and without the curves it would not."""
    import pickle

    rng = random.Random(brackets)
    curves = _CURVES
    curves.clear()
    _ENDED.clear()
    through = Asha(metric="m", mode=mode, max_epochs=27, grace_period=1, reduction_factor=rf, brackets=brackets,
                   window=window, curves=_Curves())
    sign = 1 if mode == "max" else -1
    at_start = pickle.dumps(through)
    shapes = [(rng.random(), rng.random()) for _ in range(60)]
    shapes[30] = (1.0, 1.0)  # the trial in flight at the stop is the best: it goes on at every rung

    def value(k: int, epoch: int) -> float:
        level, slope = shapes[k]
        return sign * (level + slope * epoch / 27 + ((k * 7919 + epoch * 104729) % 100) / 2000)

    def run(asha, k: int, epochs) -> list[str]:
        trial = _tagged(k)
        decisions = []
        for epoch in epochs:
            decision = asha.on_trial_result(None, trial, {"training_iteration": epoch, "m": value(k, epoch)})
            curves.setdefault(trial.trial_id, {}).setdefault(epoch, value(k, epoch))  # the searcher's report
            decisions.append(decision)
            if decision == TrialScheduler.STOP:
                break
        return decisions

    # 30 trials run through; the 31st is at epoch 11 when Tune last saves, at 13 when the driver stops.
    ended = []
    for k in range(30):
        through.on_trial_add(None, _tagged(k))
        ended.append(len(run(through, k, range(1, 28))))
    through.on_trial_add(None, _tagged(30))
    assert run(through, 30, range(1, 14)) == [TrialScheduler.CONTINUE] * 13, "the setup needs trial 30 to go on"
    stops = {k for k in range(30) if ended[k] < 27}
    assert stops and len(stops) < 30

    def resumed(with_curves: bool):
        asha = pickle.loads(at_start)
        if not with_curves:
            asha._curves = None
        asha.on_trial_add(None, _Restored(30, "PENDING", last_epoch=11))  # newest result first, as Tune re-adds
        for k in reversed(range(30)):
            asha.on_trial_add(None, _Restored(k, "TERMINATED", last_epoch=ended[k]))
        return asha

    again = resumed(with_curves=True)
    # Trial 30 restarts from its checkpoint at epoch 10: epochs 11..27, where the one that ran through sees 14..27.
    assert run(again, 30, range(11, 28))[3:] == run(through, 30, range(14, 28))
    for k in range(31, 60):
        for asha in (through, again):
            asha.on_trial_add(None, _tagged(k))
        assert run(again, k, range(1, 28)) == run(through, k, range(1, 28)), k

    # Without the curves (how Tune resumes its own ASHA) the first trial at a rung goes on, however bad.
    low = _tagged(60)
    for with_curves, expected in ((False, TrialScheduler.CONTINUE), (True, TrialScheduler.STOP)):
        asha = resumed(with_curves)
        asha.on_trial_add(None, low)
        assert asha.on_trial_result(None, low, {"training_iteration": 1, "m": -sign * 10.0}) == expected


def test_asha_replays_all_of_a_trial_optuna_holds_as_ended_though_tune_saved_it_running():
    """After a crash Tune's saved state can be older than a trial's end: Tune adds it back as PENDING with an
    older last result, and the study's stopper ends its rerun before the scheduler sees a result. Its rungs past
    Tune's save come from its curve all the same, because Optuna holds it as ended; a trial Optuna does not
    hold as ended is replayed only up to Tune's last result."""
    _CURVES.clear()
    _ENDED.clear()
    curve = {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.71}
    _CURVES.update({"id0": curve, "id1": curve, "id2": curve})
    _ENDED.update({"id0", "id2"})
    asha = _as_tune_restores_it(Asha(metric="m", mode="max", max_epochs=9, grace_period=1, reduction_factor=3,
                                     curves=_Curves()))
    asha.on_trial_add(None, _Restored(0, "PENDING", last_epoch=2))
    asha.on_trial_add(None, _Restored(1, "PENDING", last_epoch=2))
    asha.on_trial_add(None, _Restored(2, "PENDING", last_epoch=0))  # it ran whole between two of Tune's saves
    asha.on_trial_add(None, _Restored(3, "PENDING", last_epoch=0))  # a new trial: no curve
    assert asha._records[0].values == {1: 0.5, 3: 0.7} == asha._records[2].values
    assert asha._records[1].values == {1: 0.5}  # rung 3 is judged again when trial 1 gets there again
    assert asha._records[3].values == {}


def test_asha_of_a_study_that_did_not_resume_never_reads_the_curves():
    asha = Asha(metric="m", mode="max", max_epochs=9, grace_period=1, reduction_factor=3, curves=_Unreachable())
    for k in range(3):
        asha.on_trial_add(None, _tagged(k))
    assert asha._read_curves is None


def test_asha_resumes_with_empty_rungs_when_the_curves_cannot_be_read(caplog):
    """Tune takes an error raised while it adds a trial back for a failed restore, and starts the study over:
    a resume goes on with empty rungs instead, and says so."""

    asha = _as_tune_restores_it(Asha(metric="m", mode="max", max_epochs=9, grace_period=1, reduction_factor=3,
                                     curves=_Unreachable()))
    asha.on_trial_add(None, _Restored(0, "TERMINATED", last_epoch=9))
    asha.on_trial_add(None, _Restored(1, "PENDING", last_epoch=2))
    assert asha._records[0].values == {} and asha._records[1].values == {}
    assert "could not read the study's learning curves back" in caplog.text


@pytest.mark.parametrize("brackets", [1, 2])
def test_every_asha_study_runs_this_asha_reading_its_curves_back_from_its_own_optuna_study(brackets):
    from types import SimpleNamespace

    from service._optuna import StudyCurves
    from service._tuner import scheduler_for
    from service.space import parse_space

    space = parse_space(f"""
name: s
trainable: synthetic
metric: val_acc
mode: max
budget: {{trials: 4, max_epochs: 9}}
scheduler: {{type: asha, brackets: {brackets}}}
params:
  lr: {{type: float, low: 0.001, high: 1.0, log: true}}
""")
    ctx = SimpleNamespace(space=space, metric="val_acc", mode="max", optuna_storage="sqlite:///o.db", study_id="s-1")
    scheduler = scheduler_for(ctx)
    assert isinstance(scheduler, Asha) and len(scheduler._milestones) == brackets
    assert scheduler._curves == StudyCurves("sqlite:///o.db", "s-1")
    assert scheduler_for(SimpleNamespace(**{**vars(ctx), "optuna_storage": None}))._curves is None


# -- rung check ------------------------------------------------------------------------------------------------
def test_rung_check_trains_every_third_of_the_first_trials_in_full_then_ever_fewer():
    from service.space import first_trained_in_full, trains_in_full

    assert first_trained_in_full(7) == [0, 3, 6, 10, 18, 34, 66]
    assert [k for k in range(200) if trains_in_full(k)] == [0, 3, 6, 10, 18, 34, 66, 130]


def _checked(window=None) -> Asha:
    return Asha(metric="m", mode="max", max_epochs=27, grace_period=1, reduction_factor=3, rung_check=True,
                window=window)


def _run_whole(asha: Asha, k: int, curve) -> list[str]:
    """Trial k's results at epochs 1..27 from curve(epoch), until the scheduler stops it."""
    decisions = []
    for epoch in range(1, 28):
        decisions.append(asha.judge(k, epoch, curve(epoch)))
        if decisions[-1] == TrialScheduler.STOP:
            break
    return decisions


def test_rung_check_never_stops_the_trials_it_trains_in_full():
    asha = _checked()
    for k in range(16):
        asha.on_trial_add(None, _Trial(f"t{k}"))
    for k in range(16):  # ever worse trials: the ones trained in full run whole; the others stop at once, the
        decisions = _run_whole(asha, k, lambda epoch, k=k: 0.9 - k / 100)  # first judged too (below trial 0)
        assert (len(decisions) == 27) == (k in (0, 3, 6, 10)), k
        assert decisions[-1] == TrialScheduler.STOP and asha.bracket_of(k) == (3 if k in (0, 3, 6, 10) else 0)


def test_rung_check_where_curves_cross_skips_the_rungs_that_would_have_stopped_the_best():
    """Three trials trained in full: two fast starters that plateau at 0.90, one slow starter that ends at 0.98
    and is below the others at rungs 1 and 3, above them at 9. A new trial skips rungs 1 and 3 (bracket 2: judged
    at 9 only), and is judged there against the trials in its bracket and the ones trained in full."""
    asha = _checked()
    for k in range(9):
        asha.on_trial_add(None, _Trial(f"t{k}"))
    fast = lambda epoch: min(0.9, 0.5 + 0.2 * epoch)  # noqa: E731
    slow = lambda epoch: 0.1 + 0.88 * min(1.0, epoch / 9)  # noqa: E731
    assert _run_whole(asha, 0, fast)[-1] == TrialScheduler.STOP  # at max_epochs: every trial ends there
    assert len(_run_whole(asha, 3, slow)) == 27 and len(_run_whole(asha, 6, fast)) == 27
    assert asha.bracket_of(7) == 2 and asha.bracket_of(8) == 2
    # Below the fast starters at rungs 1 and 3, not judged there (its bracket starts at 9): stopped at 9, below
    # the trials trained in full.
    assert len(_run_whole(asha, 7, lambda epoch: 0.5)) == 9
    assert len(_run_whole(asha, 8, lambda epoch: 0.95)) == 27  # above the cutoff at 9 (0.90, 0.98, 0.90, 0.5)


def test_rung_check_where_curves_do_not_cross_keeps_every_rung():
    asha = _checked()
    for k in range(9):
        asha.on_trial_add(None, _Trial(f"t{k}"))
    for k, level in ((0, 0.5), (3, 0.9), (6, 0.7)):  # the best at the end is the best at every rung
        _run_whole(asha, k, lambda epoch, level=level: level + epoch / 1000)
    assert len(_run_whole(asha, 7, lambda epoch: 0.8 + epoch / 1000)) == 27  # the first judged: it goes on
    assert _run_whole(asha, 8, lambda epoch: 0.6) == [TrialScheduler.STOP]  # below trial 7 at epoch 1
    assert asha.bracket_of(7) == asha.bracket_of(8) == 0


def test_rung_check_waits_for_three_trials_in_full_and_in_a_window_reads_only_the_trials_before_it():
    """Until three trials that trained in full have ended, a trial keeps every rung. In deterministic mode the
    check of trial k reads trials 0..k-c only (ended before it started): what happened since cannot change it."""
    fast = lambda epoch: min(0.9, 0.5 + 0.2 * epoch)  # noqa: E731
    slow = lambda epoch: 0.1 + 0.88 * min(1.0, epoch / 9)  # noqa: E731
    from service.space import first_checked

    for window, expected in ((None, [0, 2]), (3, [0, 0])):
        asha = _checked(window)
        for k in range(10):
            asha.on_trial_add(None, _Trial(f"t{k}"))
        _run_whole(asha, 0, fast)
        _run_whole(asha, 3, slow)
        assert asha.bracket_of(4) == 0  # two trained in full have ended: too few to check
        _run_whole(asha, 6, fast)
        # Trial 4 was checked once, before trial 6 ended; in a window of 3, trial 8 reads trials 0..5 only.
        assert [asha.bracket_of(4), asha.bracket_of(8)] == expected
        # The first trial a check applies to, as `hpsearch validate` names it: trial 8 (7 alone), or 10 in a window.
        assert first_checked(window) == (7 if window is None else 9) and asha.bracket_of(first_checked(window)) == 2


@pytest.mark.parametrize("window", [2, None])
def test_rung_check_of_a_resumed_study_gives_every_trial_the_bracket_it_had(window):
    """A resumed study's scheduler is the one Tune pickled at the start: every trial's bracket is checked again
    from the rungs and ends replayed from the learning curves. In deterministic mode, or with trials run one at a
    time, the answer is the same: a check reads only the trials created before its own."""
    import pickle

    _CURVES.clear()
    _ENDED.clear()
    through = Asha(metric="m", mode="max", max_epochs=27, grace_period=1, reduction_factor=3, rung_check=True,
                   window=window, curves=_Curves())
    at_start = pickle.dumps(through)
    rng = random.Random(3)
    shapes = [(rng.random(), rng.random() * 20) for _ in range(12)]  # slow starters with high plateaus and others

    def curve(k):
        plateau, delay = shapes[k]
        return lambda epoch: 0.1 + plateau * min(1.0, epoch / (1 + delay))

    ends = {}
    for k in range(12):
        through.on_trial_add(None, _tagged(k))
        decisions = _run_whole(through, k, curve(k))
        ends[k] = len(decisions)
        _CURVES[f"id{k}"] = {epoch: curve(k)(epoch) for epoch in range(1, ends[k] + 1)}
        _ENDED.add(f"id{k}")
    brackets = [through.bracket_of(k) for k in range(12)]
    assert 0 < max(b for k, b in enumerate(brackets) if k not in (0, 3, 6, 10)), "the setup needs a rung skipped"

    again = pickle.loads(at_start)
    for k in reversed(range(12)):
        again.on_trial_add(None, _Restored(k, "TERMINATED", last_epoch=ends[k]))
    assert [again.bracket_of(k) for k in range(12)] == brackets
    for asha in (through, again):
        asha.on_trial_add(None, _tagged(12))
    assert _run_whole(again, 12, curve(3)) == _run_whole(through, 12, curve(3))
