"""The study's Optuna side: its storage, its own trials, counts and best, the Pareto front, reconciliation.

Optuna's study is the source of truth for trials: every number shown by `hpsearch status`, written to the
registry or to MLflow's parent run is computed here, from it. Optuna is imported inside the functions, so
importing this module stays cheap (`hpsearch list` never needs Optuna).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from service._states import TrialLabel, trial_label

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

TUNE_TRIAL_ID_ATTR = "tune_trial_id"  # user attribute linking an Optuna trial to its Tune trial
WARM_START_SOURCE_ATTR = "warm_start.source"  # user attribute of a trial copied in from an earlier study
STUDY_ID_ATTR = "hpsearch.study_id"  # study user attributes: the registry's id and the metric names
METRICS_ATTR = "hpsearch.metrics"
# Study user attributes per trial number (`<attr>.<number>`): Optuna's public API sets user attributes of a
# running trial only through the Trial object its asker holds, so the driver's callbacks note these on the study.
RETRIES_ATTR = "hpsearch.retries"  # how often the trial was restarted after its worker or node was lost
LOST_ATTR = "hpsearch.lost"  # why it failed: its workers were lost more often than max_retries (not its fault)
RECONCILED_ATTR = "hpsearch.reconciled"  # why a trial left running was failed when the study ended
OUT_OF_TIME_ATTR = "hpsearch.out_of_time"  # the study ended because budget.time was spent
# deterministic mode: how a finished trial ended ({"state", "values"}), held back from the sampler until its turn
# (trial order); told by `tell_held` when the study ends before that turn came
HELD_ATTR = "hpsearch.held"


def note_trial(study: "optuna.Study", attr: str, number: int, value: Any) -> None:
    """Note `attr` of trial `number` on the study (`<attr>.<number>`)."""
    study.set_user_attr(f"{attr}.{number}", value)


def trial_note(notes: Mapping[str, Any], attr: str, number: int, default: Any = None) -> Any:
    """What was noted as `attr` of trial `number`, from a study's notes (`study.user_attrs`: each read of it is a
    storage query, so a caller looking at many trials reads it once)."""
    return notes.get(f"{attr}.{number}", default)


def noted_trials(study: "optuna.Study", attr: str) -> frozenset[int]:
    """The numbers of the trials the driver noted `attr` for (e.g. LOST_ATTR: failed because their workers
    were lost, which the failure budget does not count)."""
    prefix = f"{attr}."
    return frozenset(int(key[len(prefix):]) for key in study.user_attrs
                     if key.startswith(prefix) and key[len(prefix):].isdigit())


def noted_retries(study: "optuna.Study", trials: list) -> int:
    """How often `trials` were restarted after a lost worker or node, as the driver noted it on the Optuna study
    (RETRIES_ATTR, per trial, at once): the durable count. Tune's saved state, from which a resumed driver's
    progress counts start again, can be a second older than the last restarts before a crash."""
    notes = study.user_attrs
    return sum(int(trial_note(notes, RETRIES_ATTR, t.number, 0)) for t in trials)


def ran_out_of_time(study: "optuna.Study") -> bool:
    """Whether the study ended because `budget.time` was spent, in this run of its driver or an earlier one
    (the budget counts the trial time of every run)."""
    return bool(study.user_attrs.get(OUT_OF_TIME_ATTR))


@functools.lru_cache(maxsize=8)
def open_storage(url: str) -> "optuna.storages.RDBStorage":
    """Optuna's storage at `url`, one per URL for the life of the process (opening one checks Optuna's schema,
    which costs more than reading a study; the API answers status from it).

    Opening retries, with a growing pause, what passes: on an empty database two processes creating Optuna's
    tables at once collide (PostgreSQL: a duplicate `alembic_version` type; SQLite: "table studies already
    exists" or a duplicate `alembic_version` row) and the loser only has to open it again; a PostgreSQL that is
    restarting, or full ("too many clients already") while other studies start, answers again within seconds
    to minutes."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    from service._database import (
        OPTUNA_BURST,
        engine_kwargs,
        transient,
        use_write_ahead_log,
        wait_for_busy_server,
        with_driver,
    )
    from service._retry import retry

    url = with_driver(url)
    kwargs = engine_kwargs(url, "hpsearch optuna", burst=OPTUNA_BURST)
    storage = retry(lambda: optuna.storages.RDBStorage(url, engine_kwargs=kwargs),
                    on=(IntegrityError, ProgrammingError, OperationalError), attempts=8,
                    what="opening Optuna's storage",
                    when=lambda exc: not isinstance(exc, OperationalError) or transient(exc) or _created_meanwhile(exc))
    if url.startswith("sqlite"):
        use_write_ahead_log(url)
    else:
        wait_for_busy_server(storage.engine)  # and every later connection waits out a busy server as well
    return storage


def _created_meanwhile(exc: BaseException) -> bool:
    """SQLite's answer to creating a table that another process has just created."""
    return "already exists" in str(exc)


def load_study(storage_url: str, study_name: str) -> Optional["optuna.Study"]:
    """The study, or None when no driver has created it yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    except KeyError:  # "Record does not exist"
        return None


def own_trials(study: "optuna.Study") -> list["optuna.trial.FrozenTrial"]:
    """The study's own trials, without those a warm start copied in from an earlier study."""
    return [t for t in study.get_trials(deepcopy=False) if WARM_START_SOURCE_ATTR not in t.user_attrs]


# Tune trial id -> Optuna number, per study name, as the searcher of this process tagged them: the driver's
# callbacks ask for the number of each trial as it starts (its MLflow run, its progress line), and reading
# every trial back from the storage for it took a few milliseconds each time. A Tune trial keeps its Optuna
# trial for good, so what is noted here never goes stale; a trial tagged by another process (an earlier driver
# of a resumed study) is looked up in the storage.
_NUMBERS: dict[tuple[str, str], int] = {}


def tag_tune_trial(trial: "optuna.trial.Trial", tune_trial_id: str) -> None:
    """Link the Optuna trial the searcher just asked for to its Tune trial (TUNE_TRIAL_ID_ATTR)."""
    trial.set_user_attr(TUNE_TRIAL_ID_ATTR, tune_trial_id)
    _NUMBERS[(trial.study.study_name, tune_trial_id)] = trial.number


def _of_tune_trial(study: "optuna.Study", tune_trial_id: str) -> Optional["optuna.trial.FrozenTrial"]:
    """The Optuna trial of a Tune trial (the searcher tags each trial it asks for with its Tune id)."""
    for t in reversed(study.get_trials(deepcopy=False)):
        if t.user_attrs.get(TUNE_TRIAL_ID_ATTR) == tune_trial_id:
            return t
    return None


def optuna_number(study: "optuna.Study", tune_trial_id: str) -> Optional[int]:
    """The Optuna number of a Tune trial."""
    number = _NUMBERS.get((study.study_name, tune_trial_id))
    if number is not None:
        return number
    trial = _of_tune_trial(study, tune_trial_id)
    return None if trial is None else trial.number


@dataclass(frozen=True)
class LearningCurves:
    """What a resumed study's ASHA replays its rungs from (service/_asha.py)."""

    values: dict[str, dict[int, float]]  # Tune trial id -> {epoch: primary metric}, as the searcher reported them
    ended: frozenset[str]  # Tune trial ids Optuna holds as ended (see ended_tune_trials)


@dataclass(frozen=True)
class StudyCurves:
    """Where a study's learning curves are (its Optuna storage and study name), read on call: a plain value, so
    the scheduler that holds it pickles into Tune's saved state. Single objective only: Optuna keeps no
    intermediate values for several objectives, so a multi-objective study has no curves to read."""

    storage_url: str
    study_name: str

    def __call__(self) -> LearningCurves:
        study = load_study(self.storage_url, self.study_name)
        if study is None:
            return LearningCurves({}, frozenset())
        values = {t.user_attrs[TUNE_TRIAL_ID_ATTR]: dict(t.intermediate_values)
                  for t in study.get_trials(deepcopy=False) if TUNE_TRIAL_ID_ATTR in t.user_attrs}
        return LearningCurves(values, ended_tune_trials(study))


def ended_tune_trials(study: Optional["optuna.Study"]) -> frozenset[str]:
    """The Tune ids of the trials Optuna holds as ended (or, in deterministic mode, as ended and held back from
    the sampler). Taken as a restored driver starts: Tune can run such a trial again, or give up on it, when its
    saved state was older than the trial's end; what it does with it then changes no record. (Asked later, the
    answer would also hold the trials this driver's searcher has just told Optuna about.)"""
    if study is None:
        return frozenset()
    return frozenset(t.user_attrs[TUNE_TRIAL_ID_ATTR] for t in study.get_trials(deepcopy=False)
                     if TUNE_TRIAL_ID_ATTR in t.user_attrs and (t.state.is_finished() or HELD_ATTR in t.user_attrs))


@dataclass(frozen=True)
class TrialCounts:
    """How many of a study's own trials are in each state."""

    n_trials: int = 0
    n_running: int = 0
    n_completed: int = 0
    n_pruned: int = 0
    n_failed: int = 0

    @classmethod
    def of(cls, trials: list) -> "TrialCounts":
        labels = [trial_label(t.state) for t in trials]
        return cls(
            n_trials=len(labels),
            n_running=sum(label in (TrialLabel.RUNNING, TrialLabel.WAITING) for label in labels),
            n_completed=labels.count(TrialLabel.COMPLETED),
            n_pruned=labels.count(TrialLabel.PRUNED),
            n_failed=labels.count(TrialLabel.FAILED),
        )

    def as_fields(self) -> dict[str, int]:
        return dict(self.__dict__)


def best_trial(study: "optuna.Study", trials: list) -> Optional["optuna.trial.FrozenTrial"]:
    """The best completed trial of a single-objective study (None for several objectives or none completed)."""
    import optuna
    from optuna.trial import TrialState

    if len(study.directions) != 1:
        return None
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if not completed:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(completed, key=lambda t: t.value)


def pareto_front(study: "optuna.Study") -> Optional[list[dict]]:
    """The study's own trials on the Pareto front, as `[{"trial", "values", "params"}]`; None for a single
    objective or before the first completed trial."""
    if len(study.directions) < 2:
        return None
    try:
        front = [t for t in study.best_trials if WARM_START_SOURCE_ATTR not in t.user_attrs]
    except ValueError:  # no completed trial yet
        return None
    return [{"trial": t.number, "values": list(t.values), "params": dict(t.params)} for t in front] or None


def tell_held(study: "optuna.Study") -> int:
    """Tell every trial the deterministic searcher held back (finished, not yet told when the study ended) as it
    ended. Only call when no driver can still tell them."""
    from optuna.trial import TrialState

    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        held = t.user_attrs.get(HELD_ATTR)
        if not held:
            continue
        try:
            study.tell(t.number, held["values"], state=TrialState[held["state"]])
            count += 1
        except Exception as exc:  # noqa: BLE001 - raced with a live tell; that tell wins
            logger.warning("could not tell held trial %s: %s", t.number, exc)
    return count


def reconcile_running(study: "optuna.Study", reason: str = "left running by an interrupted driver") -> int:
    """Tell FAIL every trial still RUNNING or WAITING (Optuna's heartbeat does not cover ask/tell); returns how
    many. Only call when no driver can still tell them."""
    from optuna.trial import TrialState

    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        note_trial(study, RECONCILED_ATTR, t.number, reason)
        try:
            study.tell(t.number, state=TrialState.FAIL)
            count += 1
        except Exception as exc:  # noqa: BLE001 - raced with a live tell; that tell wins
            logger.warning("could not reconcile trial %s: %s", t.number, exc)
    return count
