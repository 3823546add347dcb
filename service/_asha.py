"""ASHA with brackets dealt in turn, and for the deterministic mode, on the rung rule of `service/space/_rungs.py`.

Ray Tune's `AsyncHyperBandScheduler` with one bracket is what a study runs by default; the space package states the
same rule (where the rungs are, the cutoff) so that `hpsearch validate` can show the rungs, and this scheduler and
the search-quality benchmark apply exactly that rule (tests/test_asha.py feeds Tune's and this one the same
results and compares every decision):

- rungs at grace * rf**k epochs for k = 0 .. floor(log(max_epochs / grace) / log(rf)); a trial is judged at a
  rung the first time it reports at or past it;
- it is stopped when its value is below the (1 - 1/rf) quantile (linear interpolation, numpy's nanpercentile)
  of the values the trials judged before it recorded at that rung; the first trial at a rung always goes on;
- a trial reaching max_epochs ends.

`Asha` is used where Tune's cannot be:
- `brackets` > 1 (asynchronous Hyperband): the k-th trial added goes to bracket b = k mod brackets, whose rungs
  are bracket 0's without its first b, and is judged only against its own bracket's trials. Tune's scheduler
  draws each trial's bracket from numpy's global random state, with odds e**(the bracket's number of rungs), so
  its never-stopping bracket gets about 3 % of the trials (4 brackets, max_epochs 27, grace 1, rf 3) and a seeded
  study is not the same twice; dealt in turn, every bracket gets an equal share and the study is reproducible.
- `window` (`sampler.deterministic`, window = concurrency c): the k-th trial is judged only against trials
  0..k-c (the ones the deterministic searcher guarantees have finished before trial k starts), never against
  whoever happened to get there first; at c = 1 that is every earlier trial, so it decides exactly as Tune's
  ASHA does. Without a window, a trial is judged against every trial of its bracket recorded so far, as Tune's.
"""

from __future__ import annotations

from typing import Optional

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from service.space import bracket_rungs, rung_cutoff


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
    """ASHA with `brackets` dealt in turn, judging within a `window` of earlier trials (see the module docstring)."""

    def __init__(self, *, metric: str, mode: str, max_epochs: int, grace_period: int, reduction_factor: float,
                 brackets: int = 1, window: Optional[int] = None):
        super().__init__()
        self._metric, self._sign = metric, (1.0 if mode == "max" else -1.0)
        self._max_epochs, self._rf, self._window = max_epochs, reduction_factor, window
        self._milestones = [bracket_rungs(max_epochs, grace_period, reduction_factor, b) for b in range(brackets)]
        self._order: dict[str, int] = {}  # trial id -> its position among the trials added
        self._records: list[RungRecord] = []

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are the space's, given at construction

    def on_trial_add(self, tune_controller, trial) -> None:
        k = len(self._records)
        self._order[trial.trial_id] = k
        self._records.append(RungRecord(self._milestones[self.bracket_of(k)]))

    def bracket_of(self, k: int) -> int:
        """The bracket of the k-th trial added."""
        return k % len(self._milestones)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self.judge(self._order[trial.trial_id], result.get("training_iteration"), result.get(self._metric))

    def judge(self, k: int, epoch, value) -> str:
        """CONTINUE or STOP for the k-th trial's result at `epoch`."""
        if epoch is None or value is None:
            return TrialScheduler.CONTINUE
        if epoch >= self._max_epochs:
            return TrialScheduler.STOP
        record = self._records[k]
        milestone = record.next_rung(epoch)
        if milestone is None:
            return TrialScheduler.CONTINUE
        value = self._sign * value
        visible = self._records if self._window is None else self._records[: max(0, k - self._window + 1)]
        brackets, bracket = len(self._milestones), self.bracket_of(k)
        earlier = [r.values[milestone] for j, r in enumerate(visible)
                   if j % brackets == bracket and j != k and milestone in r.values]
        cutoff = rung_cutoff(earlier, self._rf)
        record.values[milestone] = value
        return TrialScheduler.STOP if cutoff is not None and value < cutoff else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"Asha: rungs at {self._milestones}" + (f", judging within {self._window}" if self._window else "")
