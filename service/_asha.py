"""Every study's ASHA: Ray Tune's rule, with brackets dealt in turn or a rung check, a window for the deterministic
mode, and its rungs carried through a resume.

The rule is Ray Tune's `AsyncHyperBandScheduler`'s; the space package states it (where the rungs are, the cutoff)
so that `hpsearch validate` can show the rungs, and this scheduler and the search-quality benchmark apply exactly
that rule (tests/test_asha.py feeds Tune's and this one the same results and compares every decision):

- rungs at grace * rf**k epochs for k = 0 .. floor(log(max_epochs / grace) / log(rf)); a trial is judged at a
  rung the first time it reports at or past it;
- it is stopped when its value is below the (1 - 1/rf) quantile (linear interpolation, numpy's nanpercentile)
  of the values the trials judged before it recorded at that rung; the first trial at a rung always goes on;
- a trial reaching max_epochs ends.

`Asha` does what Tune's cannot:
- a resumed study judges as if it had not stopped. Tune saves its searcher and callbacks but not its scheduler:
  on resume its ASHA starts with no values at any rung, so the next trials are judged against none of the
  study's earlier ones (the first trial at a rung always goes on) and early stopping all but stops. Here every
  trial Tune adds back gets the values it recorded at the rungs, replayed from its learning curve in the Optuna
  study (`curves`): a trial that had ended (by Tune's saved state, or by Optuna's, which can be newer) all of
  it, any other up to the last result Tune's saved state holds for it. Not for a multi-objective study (Optuna
  keeps no curves for several objectives) nor one submitted before this (Tune restores the scheduler the study
  started with);
- `brackets` > 1 (asynchronous Hyperband): the k-th trial added goes to bracket b = k mod brackets, whose rungs
  are bracket 0's without its first b, and is judged only against its own bracket's trials. Tune's scheduler
  draws each trial's bracket from numpy's global random state, with odds e**(the bracket's number of rungs), so
  its never-stopping bracket gets about 3 % of the trials (4 brackets, max_epochs 27, grace 1, rf 3) and a seeded
  study is not the same twice; dealt in turn, every bracket gets an equal share and the study is reproducible.
- `rung_check` (instead of brackets): some trials train in full, never judged (`service.space.trains_in_full`:
  the 1st, 4th and 7th, then the 11th, 19th, 35th, ...), and recorded at every rung and at max_epochs. When a
  trial gives its first result, the best of those that have ended (at least 3) is checked against the rungs:
  every rung at which it would have been stopped (its value below the cutoff of the other trials' values
  there), and the rungs before it, are skipped for this trial (it joins the bracket that starts after them; the
  last judges nowhere). A trial is judged against its bracket's trials and the ones trained in full: those
  are a sample no rung chose, recorded at every rung, so the first trials of a bracket are judged against them
  instead of going on unjudged. Where learning curves cross, the best trials start slowly and the early rungs
  would have stopped them: the study moves to later rungs, or stops judging. Where they do not, the rungs stay
  and cost only the trials that trained in full. A trial keeps the bracket it got. Tune restores the scheduler it pickled
  at the start, so after a resume each trial is checked again from the rungs replayed, reading only the trials
  created before it: the same answer where trials ran one at a time or in deterministic mode (which reads only
  trials that had ended before it started); with trials in flight together an unfinished trial can get another
  bracket.
- `window` (`sampler.deterministic`, window = concurrency c): the k-th trial is judged only against trials
  0..k-c (the ones the deterministic searcher guarantees have finished before trial k starts), never against
  whoever happened to get there first; at c = 1 that is every earlier trial, so it decides exactly as Tune's
  ASHA does. Without a window, a trial is judged against every trial of its bracket recorded so far, as Tune's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Optional

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from service.space import (
    RUNG_CHECK_FIRST,
    bracket_rungs,
    last_checked_against,
    max_brackets,
    rung_cutoff,
    trains_in_full,
)

if TYPE_CHECKING:
    from service._optuna import LearningCurves

logger = logging.getLogger(__name__)


class RungRecord:
    """One trial's values at the rungs, recorded as ASHA does: at the highest milestone <= epoch it has not recorded at."""

    def __init__(self, milestones: list[float]):
        self.milestones = milestones
        self.values: dict[float, float] = {}

    def next_rung(self, epoch: float) -> Optional[float]:
        for milestone in reversed(self.milestones):
            if epoch >= milestone and milestone not in self.values:
                return milestone
        return None


class Asha(FIFOScheduler):
    """ASHA with `brackets` dealt in turn, judging within a `window` of earlier trials (see the module docstring).

    A trial's position k is the order Tune's search generator created it in (the counter that begins its
    `experiment_tag`), not the order of `on_trial_add` calls: Tune adds a trial again when it restarts it after a
    lost worker, and on resume re-adds every trial newest result first. So a trial keeps its bracket and its
    window through a retry and a resume; one added again keeps its rung values too (a resumed study's scheduler
    starts with none: Tune does not save it; `curves` gives them back). A trial without such a tag (the
    search-quality benchmark's) takes the next position.

    `curves`: called once, as Tune adds back the first trial of a resumed study, for every trial's learning curve
    and which trials ended (`service._optuna.LearningCurves`); None (the benchmark's replays) gives a resumed
    study no values back."""

    def __init__(self, *, metric: str, mode: str, max_epochs: int, grace_period: int, reduction_factor: float,
                 brackets: int = 1, rung_check: bool = False, window: Optional[int] = None,
                 curves: Optional[Callable[[], "LearningCurves"]] = None):
        super().__init__()
        self._metric, self._sign = metric, (1.0 if mode == "max" else -1.0)
        self._max_epochs, self._rf, self._window = max_epochs, reduction_factor, window
        if rung_check:  # every bracket a check can move a trial to: skipping none of the rungs, one, ... all
            brackets = max_brackets(max_epochs, grace_period, reduction_factor)
        self._milestones = [bracket_rungs(max_epochs, grace_period, reduction_factor, b) for b in range(brackets)]
        self._rung_check = rung_check
        self._checked: dict[int, int] = {}  # rung check: position -> the bracket its check gave it
        self._finals: dict[int, float] = {}  # rung check: position -> its value at max_epochs (higher is better)
        self._order: dict[str, int] = {}  # trial id -> its position k
        self._records: dict[int, RungRecord] = {}  # position -> its values at the rungs
        self._curves = curves
        self._read_curves: Optional["LearningCurves"] = None  # what `curves` gave, once asked
        self._resumed = False  # unpickled: Tune restores the scheduler only as it resumes a study

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_read_curves": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._resumed = True

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are the space's, given at construction

    def on_trial_add(self, tune_controller, trial) -> None:
        if trial.trial_id in self._order:  # restarted after a lost worker: same bracket, same rung values
            return
        k = _created_position(trial)
        if k is None or k in self._records:
            k = max(self._records, default=-1) + 1
        self._order[trial.trial_id] = k
        # With a rung check every trial records at all of bracket 0's rungs: the check reads them all.
        self._records[k] = RungRecord(self._milestones[0 if self._checks() else self.bracket_of(k)])
        self._replay(trial, self._records[k], k)

    def _checks(self) -> bool:
        return getattr(self, "_rung_check", False)  # absent in what an older hpsearch pickled

    def _replay(self, trial, record: RungRecord, k: int) -> None:
        """A trial Tune adds as a study resumes: record what it recorded at the rungs before, from its learning
        curve, as `judge` did: all of it for a trial that had ended, else up to the last result Tune saved for
        it (later epochs, reached after Tune's last save, are judged again when the trial reaches them again).
        A new trial has no curve and nothing to replay; a study that did not resume reads nothing."""
        curves = getattr(self, "_curves", None)  # None in what an older hpsearch pickled
        if curves is None or not self._resumed:
            return
        if self._read_curves is None:
            self._read_curves = _read(curves)
        # Optuna may hold as ended a trial that Tune saved before its end, even before its first result: Tune runs
        # it again, and the study's stopper ends that rerun at its first result, before this scheduler sees it.
        ended = trial.status in ("TERMINATED", "ERROR") or trial.trial_id in self._read_curves.ended
        last = (trial.last_result or {}).get("training_iteration") or 0
        curve = self._read_curves.values.get(trial.trial_id, {})
        if ended and self._checks() and self._max_epochs in curve:
            self._finals[k] = self._sign * curve[self._max_epochs]
        for epoch in sorted(curve):
            if epoch >= self._max_epochs or (not ended and epoch > last):
                break  # judge records nothing at max_epochs; past `last`, the trial is judged again
            milestone = record.next_rung(epoch)
            if milestone is not None:
                record.values[milestone] = self._sign * curve[epoch]

    def bracket_of(self, k: int) -> int:
        """The bracket of the trial at position k: dealt in turn, or (rung check) the last, judging nowhere, for a
        trial that trains in full, else the one its check gives it (decided once, at its first result)."""
        if not self._checks():
            return k % len(self._milestones)
        if trains_in_full(k):
            return len(self._milestones) - 1
        if k not in self._checked:
            self._checked[k] = self._check(k)
        return self._checked[k]

    def _check(self, k: int) -> int:
        """How many of bracket 0's rungs the trial at position k skips: up to and including the last rung at which
        the best of the trials that trained in full and ended (that k may see) would have been stopped, judged
        against the values every other trial k may see recorded there. None skipped before 3 such trials ended.
        Trial k sees the trials created before it (in a window, the ones that ended before it started), not the
        later ones: a resumed study, which checks its trials again from the rungs replayed, then gives a trial the
        bracket it had when trials ran one at a time (and in deterministic mode)."""
        last = last_checked_against(k, self._window)
        seen = {j: r for j, r in self._records.items() if j <= last}
        full = {j: self._finals[j] for j in seen if j in self._finals and trains_in_full(j)}
        if len(full) < RUNG_CHECK_FIRST:
            return 0
        best = max(full, key=lambda j: (full[j], -j))  # ties: the earlier trial
        skipped = 0
        for i, milestone in enumerate(self._milestones[0][:len(self._milestones) - 1]):  # the rungs judged
            value = seen[best].values.get(milestone)
            cutoff = rung_cutoff([r.values[milestone] for j, r in seen.items()
                                  if j != best and milestone in r.values], self._rf)
            if value is not None and cutoff is not None and value < cutoff:
                skipped = i + 1
        return skipped

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self.judge(self._order[trial.trial_id], result.get("training_iteration"), result.get(self._metric))

    def judge(self, k: int, epoch, value) -> str:
        """CONTINUE or STOP for the k-th trial's result at `epoch`."""
        if epoch is None or value is None:
            return TrialScheduler.CONTINUE
        bracket = self.bracket_of(k)  # first: a rung check decides on what was recorded before this result
        if epoch >= self._max_epochs:
            if self._checks():
                self._finals[k] = self._sign * value
            return TrialScheduler.STOP
        record = self._records[k]
        milestone = record.next_rung(epoch)
        if milestone is None:
            return TrialScheduler.CONTINUE
        value = self._sign * value
        record.values[milestone] = value
        if milestone not in self._milestones[bracket]:  # recorded for a rung check, not judged
            return TrialScheduler.CONTINUE
        last = None if self._window is None else k - self._window  # the last position trial k may see
        earlier = [r.values[milestone] for j, r in self._records.items()
                   if j != k and (last is None or j <= last) and milestone in r.values
                   and (self.bracket_of(j) == bracket or self._checks() and trains_in_full(j))]
        cutoff = rung_cutoff(earlier, self._rf)
        return TrialScheduler.STOP if cutoff is not None and value < cutoff else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return (f"Asha: rungs at {self._milestones}" + (", rung check" if self._checks() else "")
                + (f", judging within {self._window}" if self._window else ""))


def _read(curves: Callable[[], "LearningCurves"]) -> "LearningCurves":
    """The study's learning curves, or none when they cannot be read: Tune takes an error raised while it adds
    a trial back for a failed restore and starts the study over, so a resume goes on with empty rungs instead."""
    from service._optuna import LearningCurves

    try:
        return curves()
    except Exception as exc:  # noqa: BLE001 - see above; the warning says why the rungs start empty
        logger.warning("ASHA could not read the study's learning curves back, its rungs start empty: %s: %s",
                       type(exc).__name__, exc)
        return LearningCurves({}, frozenset())


def _created_position(trial) -> Optional[int]:
    """0-based order in which Tune's search generator created the trial: its experiment_tag is "<n>_<config>",
    n counting from 1 (ray.tune.search.search_generator)."""
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) - 1 if head.isdigit() and int(head) > 0 else None


class DeterministicAsha(Asha):
    """What hpsearch saved before `scheduler.brackets` for a deterministic study's ASHA (Tune pickles a study's
    scheduler and restores it on resume): read back as one bracket judging within a window of its concurrency."""

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["_window"] = state.pop("_concurrency")
        state["_milestones"] = [state["_milestones"]]
        state["_records"] = dict(enumerate(state["_records"]))
        self.__dict__.update(state)
