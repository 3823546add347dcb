"""The Ray Tune searcher of a study: asks its Optuna study for every trial and tells it what really happened.

Written on Tune's public `Searcher` interface rather than on `OptunaSearch`, whose Ray 2.60 version tells every
trial that ends without an error as COMPLETE (so TPE takes a trial ASHA stopped after one epoch for a finished
one) and never hands Optuna the result a trial ended on. Here:
- each trial is asked for with the space's define-by-run suggestions (`when:` conditionals hold) and tagged
  with its Tune id (`tune_trial_id`), which links it to its MLflow run and progress line;
- every epoch's primary metric is reported as an intermediate value, the last one included, so Optuna has the
  whole learning curve of every trial (what the report's intermediate-values plot shows);
- a trial ends as `service._outcome.trial_outcome` judges it: COMPLETE, PRUNED (stopped before max_epochs), or
  FAIL (raised, or a metric missing or not finite);
- the searcher, not Tune, keeps the budget: how many trials (`budget.trials`; a grid that has tried every
  point ends the study too, instead of repeating points) and how many at once (`budget.concurrency`). It ends
  the search (Searcher.FINISHED) only once every trial it asked for has finished. Tune copies its saved state
  file by file, so a driver that dies during a save can leave Tune's list of trials, its count of them and its
  count of running ones from different moments; on restore the searcher takes Tune's list as the truth
  (`_agree_with_tune`) and asks for a trial in place of each one Tune lost.

With `sampler.deterministic` (and a seed) a study is the same on every run at any concurrency c: the k-th trial
is asked for only once trials 0..k-c have finished, and the sampler has then been told exactly those, in trial
order (how a trial ended is held back until then), whatever order Tune finished them in. Learning curves are
reported as they come: the samplers read intermediate values of finished (pruned) trials only. At c = 1 this is
what always happens; above, a worker may wait for an older trial to finish. A study that ends before a held
trial's turn (time budget, failures) tells it at the end (`service._optuna.tell_held`).
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings
from typing import TYPE_CHECKING, Any, Optional

from ray.tune.search import Searcher

from service._optuna import (
    HELD_ATTR,
    LOST_ATTR,
    METRICS_ATTR,
    RECONCILED_ATTR,
    STUDY_ID_ATTR,
    TUNE_TRIAL_ID_ATTR,
    WARM_START_SOURCE_ATTR,
    note_trial,
    noted_trials,
    open_storage,
    tag_tune_trial,
)
from service._outcome import TrialOutcome, trial_outcome

if TYPE_CHECKING:
    import optuna

    from service.space import SearchSpace

logger = logging.getLogger(__name__)

# Why a restored driver fails a trial it cannot continue (noted under LOST_ATTR, the trial's MLflow fail reason).
LOST_REASON = "its driver died before Tune saved the trial; a new trial took its place"


class StudySearcher(Searcher):
    def __init__(self, *, study_name: str, storage_url: Optional[str], space: "SearchSpace", seed_trials: list = (),
                 experiment_path: Optional[str] = None):
        """`storage_url` None keeps the Optuna study in memory (benchmarks/search_quality.py replays studies so).
        `experiment_path` is Tune's directory of the study, read on restore for the trials Tune kept."""
        metric, mode = (list(space.metrics), list(space.modes)) if space.is_multi_objective else (space.metrics[0], space.modes[0])
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.study_name = study_name
        self.storage_url = storage_url
        self.experiment_path = experiment_path
        self._trials: dict[str, "optuna.trial.Trial"] = {}  # Tune trial id -> its Optuna trial
        self._reported: dict[str, int] = {}  # Tune trial id -> last step told to Optuna
        self._finished: set[str] = set()
        # Tune trial ids in the order they were asked for; in deterministic mode also how each finished one ended
        # (held back until its turn), and how many of them (a prefix of the order) Optuna has been told
        self._order: list[str] = []
        self._held: dict[str, "TrialOutcome"] = {}
        self._told = 0
        self.study = self._create_study(seed_trials)

    def _create_study(self, seed_trials: list) -> "optuna.Study":
        import optuna

        from service.space import build_sampler

        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage_url) if self.storage_url else None,
            sampler=build_sampler(self.space),
            directions=["maximize" if m == "max" else "minimize" for m in self.space.modes],
            load_if_exists=True,
        )
        with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged through 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(self.space.metrics))  # optuna-dashboard and the plots name the objectives
        study.set_user_attr(STUDY_ID_ATTR, self.study_name)
        study.set_user_attr(METRICS_ATTR, list(self.space.metrics))
        if seed_trials:
            study.add_trials(seed_trials)  # before the first ask: TPE starts from them
        return study

    # -- Tune's calls --------------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> Optional[dict]:
        from service.space import suggest_params

        if self._deterministic:
            self._tell_held()
            if self._told < len(self._order) - self.space.budget.concurrency + 1:
                return None  # an older trial is still running: Tune asks again later
        running = len(self._trials) - len(self._finished)
        if self._asked_all():
            # Not before every trial has finished: a trial Tune loses in a restore is asked for again.
            return None if running else Searcher.FINISHED
        if running >= self.space.budget.concurrency:
            return None
        trial = self.study.ask()
        tag_tune_trial(trial, trial_id)
        self._trials[trial_id] = trial
        self._order.append(trial_id)
        return {**suggest_params(self.space, trial), **self.space.trial_constants()}

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """True: Tune's ConcurrencyLimiter leaves the limit (`budget.concurrency`) to this searcher, which counts
        the trials it asked for that have not finished, as reconciled with Tune's on restore; the limiter's own
        count would keep a trial Tune lost running forever."""
        return True

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        trial = self._trials.get(trial_id)
        if trial is None or trial_id in self._finished:
            return
        # Tune hands the result that ends a trial (the one ASHA stopped it on, or the last epoch) only to
        # on_trial_complete: it is the learning curve's last point.
        if result:
            self._report(trial_id, result)
        self._finished.add(trial_id)
        outcome = trial_outcome(result, error, self.space.metrics, self.space.budget.max_epochs)
        if self._deterministic:
            self._held[trial_id] = outcome
            # kept on the trial too, so that a study ending before its turn still records it (tell_held)
            trial.set_user_attr(HELD_ATTR, {"state": outcome.optuna_state.name,
                                            "values": outcome.told_values(self.space.is_multi_objective)})
            self._tell_held()
        else:
            self._tell(trial, outcome)

    def _tell(self, trial: "optuna.trial.Trial", outcome) -> None:
        try:
            self.study.tell(trial, outcome.told_values(self.space.is_multi_objective), state=outcome.optuna_state)
        except Exception as exc:  # noqa: BLE001 - finished meanwhile by a reconciliation; Tune goes on
            logger.warning("could not tell Optuna trial %s as %s: %s", trial.number, outcome.label, exc)

    @property
    def _deterministic(self) -> bool:
        return self.space.sampler.deterministic

    def _tell_held(self) -> None:
        """Deterministic mode: tell Optuna, in trial order, every finished trial that the next trial to be
        asked for must see (k sees 0..k-c), and all of them once no trial is left to ask for."""
        visible = len(self._order) if self._asked_all() else len(self._order) - self.space.budget.concurrency + 1
        while self._told < visible and self._order[self._told] in self._finished:
            trial_id = self._order[self._told]
            outcome = self._held.pop(trial_id, None)  # none: a restore took it back as Optuna had it, told
            if outcome is not None:
                self._tell(self._trials[trial_id], outcome)
            self._told += 1

    def save(self, checkpoint_path: str) -> None:
        # The trials keep the study (its storage and sampler state) by reference: pickled once, restored shared.
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.__dict__, fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.__dict__.update(pickle.load(fh))
        if getattr(self, "experiment_path", None):  # a study saved by an older hpsearch has none
            self._agree_with_tune(_tune_trials(self.experiment_path))
        self._fail_unsaved_trials()

    def _agree_with_tune(self, tune_trials: list) -> None:
        """Make this restored searcher agree with the trials Tune restored, which may have been saved a moment
        before or after it (Tune's files are copied one by one):
        - a trial it asked for that Tune does not know, and that has not finished in Optuna either, is failed as
          lost and no longer counted: a new trial is asked for in its place (one that has finished, or in
          deterministic mode ended and was held back, is taken back as the last point says);
        - a trial Tune knows that it does not (asked after its state was saved) is taken back, by the Tune id
          its Optuna trial carries, and goes on;
        - a trial Tune saved as ended that it saved as running is ended here as Tune ended it (Tune does not
          end a restored trial twice);
        - a trial it saved as running that Optuna holds as ended (or, in deterministic mode, as ended and held
          back) ended after the save: its end stands, and a rerun Tune makes of it (stopped at its first result,
          service/_progress.py) changes no record;
        - a trial asked for, run and ended between two of Tune's saves (one that never checkpointed, or failed in
          its first epoch), which neither saved state knows, is taken back as ended unless it was cut off (failed
          as lost, or as left running when a study ended): it counts in the budget, and in deterministic mode an
          end still held back is told in its turn, not failed as lost."""
        from optuna.trial import Trial, TrialState

        in_tune = {t.trial_id: t for t in tune_trials}
        by_tune_id = {t.user_attrs.get(TUNE_TRIAL_ID_ATTR): t for t in self.study.get_trials(deepcopy=False)}
        for trial_id in [t for t in self._order if t not in in_tune and t not in self._finished]:
            number = self._trials.pop(trial_id).number
            self._order.remove(trial_id)
            self._reported.pop(trial_id, None)
            frozen = by_tune_id[trial_id]
            if frozen.state == TrialState.RUNNING and HELD_ATTR not in frozen.user_attrs:  # held: taken back below
                self._fail_as_lost(number)
        cut_off = noted_trials(self.study, LOST_ATTR) | noted_trials(self.study, RECONCILED_ATTR)
        taken_back = [t for i, t in by_tune_id.items() if i is not None and i not in self._trials
                      and (i in in_tune or _ended_unseen(t, cut_off))]
        for frozen in sorted(taken_back, key=lambda t: t.number):
            trial_id = frozen.user_attrs[TUNE_TRIAL_ID_ATTR]
            self._trials[trial_id] = Trial(self.study, frozen._trial_id)  # its storage id (no public accessor)
            self._order.append(trial_id)
            self._reported[trial_id] = max(frozen.intermediate_values, default=0)
            if frozen.state.is_finished():
                self._finished.add(trial_id)
            elif trial_id not in in_tune and HELD_ATTR in frozen.user_attrs:  # ended, held back for its turn
                self._finished.add(trial_id)
                held = frozen.user_attrs[HELD_ATTR]
                self._held[trial_id] = TrialOutcome.as_told(held["state"], held["values"])
        for trial_id in [t for t in self._order if t not in self._finished]:
            frozen = by_tune_id[trial_id]
            if frozen.state.is_finished() or HELD_ATTR in frozen.user_attrs:  # ended after this state was saved
                self._finished.add(trial_id)  # Tune may run it again: what that rerun reports changes no record
                if not frozen.state.is_finished():
                    held = frozen.user_attrs[HELD_ATTR]
                    self._held[trial_id] = TrialOutcome.as_told(held["state"], held["values"])
        for trial_id, tune_trial in in_tune.items():
            if trial_id not in self._trials or trial_id in self._finished or tune_trial.status not in ("TERMINATED", "ERROR"):
                continue
            if by_tune_id[trial_id].state == TrialState.RUNNING:
                self.on_trial_complete(trial_id, tune_trial.last_result or None, error=tune_trial.status == "ERROR")
            self._finished.add(trial_id)

    def _fail_unsaved_trials(self) -> None:
        """Trials the Optuna study holds as running that this restored searcher never asked for: a driver that
        died asked for them after Tune last saved its state, so Tune does not know them and asks for new trials
        in their place. They are failed as lost (LOST_ATTR: not their fault, outside the failure budget), or
        they would stay running until the study ends and then count as failures."""
        from optuna.trial import TrialState

        known = {trial.number for trial in self._trials.values()}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number not in known and WARM_START_SOURCE_ATTR not in t.user_attrs:
                self._fail_as_lost(t.number)

    def _fail_as_lost(self, number: int) -> None:
        """Fail a trial a restored driver cannot continue (Tune's or this searcher's saved state lacks it) and
        note why: LOST_REASON, the same words whichever saved state lacks it."""
        from optuna.trial import TrialState

        try:
            self.study.tell(number, state=TrialState.FAIL)
        except Exception as exc:  # noqa: BLE001 - finished meanwhile; that tell wins
            logger.warning("could not fail lost trial %s: %s", number, exc)
            return
        note_trial(self.study, LOST_ATTR, number, LOST_REASON)

    # -- helpers -------------------------------------------------------------------------------------------
    def _report(self, trial_id: str, result: dict) -> None:
        """The primary metric of one epoch as an intermediate value (single objective: Optuna keeps no curves
        for several)."""
        trial = self._trials.get(trial_id)
        step = result.get("training_iteration", 0)
        value = result.get(self.space.metrics[0])
        if (trial is None or trial_id in self._finished or self.space.is_multi_objective
                or step <= self._reported.get(trial_id, 0) or not _finite(value)):
            return
        try:
            trial.report(float(value), step)
        except RuntimeError as exc:  # finished meanwhile by a reconciliation
            logger.warning("could not report to Optuna trial %s: %s", trial.number, exc)
        self._reported[trial_id] = step

    def _asked_all(self) -> bool:
        return len(self._order) >= self.space.budget.trials or self._grid_exhausted()

    def _grid_exhausted(self) -> bool:
        is_exhausted = getattr(self.study.sampler, "is_exhausted", None)  # GridSampler's
        return bool(is_exhausted and is_exhausted(self.study))


def _tune_trials(experiment_path: str) -> list:
    """The trials Tune keeps in its newest saved state of the experiment (the state `Tuner.restore` loads)."""
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis(experiment_path).trials


def _ended_unseen(frozen: "optuna.trial.FrozenTrial", cut_off: frozenset[int]) -> bool:
    """An own trial that ended (or, in deterministic mode, ended and was held back), and was not cut off (failed as
    lost by a restore, or as left running when a study ended: `cut_off`): if neither of Tune's saved states knows
    it, it ran whole between two saves."""
    if WARM_START_SOURCE_ATTR in frozen.user_attrs or frozen.number in cut_off:
        return False
    return frozen.state.is_finished() or HELD_ATTR in frozen.user_attrs


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
