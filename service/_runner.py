"""The study runner: a validated space in, a finished (or stopped) study out.

Reads top to bottom in the order a study lives: it is recorded in the registry (submit), or found there
again (resume, or a driver the API launched); then `run_study` opens its records, connects to Ray, builds and
fits the Tuner, judges the outcome and closes the records. Each step is one call into the room that owns it:

    service/_records.py   the registry row, the MLflow run and the Optuna study, opened and closed together
    service/_ray.py       connecting to an embedded Ray or a cluster
    service/_tuner.py     the Tuner: trainable, searcher (service/_searcher.py), scheduler, callbacks
    service/_outcome.py   how a trial and the study ended
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Optional

from service._errors import StudyError
from service._outcome import StudyOutcome, study_outcome
from service._registry import Registry, StudyRecord, new_study_id, open_registry
from service._settings import Settings
from service._states import StudyStatus
from service._summary import StudySummary

logger = logging.getLogger(__name__)


# -- How a study comes to run --------------------------------------------------------------------------------
def submit_study(
    space,
    settings: Settings,
    *,
    show_progress: bool = True,
    ray_address: Optional[str] = None,
    register: Optional[str] = None,
    warm_start: Optional[str] = None,
    wait_for_report: bool = True,
) -> StudySummary:
    """Record a new study in the registry and run it to the end on this machine's Ray (or `ray_address`)."""
    # Ray up (or the cluster reachable and admitting us) before anything is recorded
    connect_ahead(ray_address, space.source, settings.tracking_uri)
    registry = open_registry(settings.registry_url)
    seed_trials = plan_warm_start(registry, warm_start, space, show_progress) if warm_start else []
    record = record_study(registry, space, settings, warm_start=warm_start, register=register)
    return run_study(registry, record, space, settings, resume=False, seed_trials=seed_trials,
                     ray_address=ray_address, show_progress=show_progress, register=register,
                     wait_for_report=wait_for_report)


# What a study imports after Ray is up: MLflow, Optuna, Tune and hpsearch's rooms that use them.
_STUDY_MODULES = ("mlflow", "mlflow.tracking", "optuna", "ray.tune", "service._records", "service._tuner",
                  "service._progress", "service._searcher", "service._trial_runs")


def connect_ahead(ray_address: Optional[str], space_source: Optional[str], tracking_uri: str) -> None:
    """Connect to Ray (service._ray.connect) while a thread imports the study's modules and, for an embedded
    Ray, opens its MLflow store: starting Ray is mostly waiting for its processes, so that work costs no wall
    time then. Opening a database store the first time creates MLflow's tables (about a second on SQLite); it
    is done once the thread is joined, before anything else opens the store. A cluster's address is not
    known to be good until `connect` returns, and nothing may be written before that."""
    import threading

    import ray

    from service._ray import connect, quiet_ray

    quiet_ray()
    if ray.is_initialized():  # connected already: nothing to overlap
        connect(ray_address, space_source)
        return
    ahead = threading.Thread(target=_load_ahead, args=(None if ray_address else tracking_uri,),
                             name="hpsearch-import-ahead", daemon=True)
    ahead.start()
    try:
        connect(ray_address, space_source)
    except BaseException:
        if ray_address is None:  # it may be creating MLflow's tables: not to be cut off half-way by the exit
            ahead.join()
        raise  # a cluster's failure is told at once: the thread only imports
    ahead.join()


def _load_ahead(tracking_uri: Optional[str]) -> None:
    from service._imports import import_ahead

    from service._ray import quiet_libraries

    import_ahead(_STUDY_MODULES)
    try:
        quiet_libraries()  # MLflow is imported now: before its store is opened
    except Exception:  # noqa: BLE001 - MLflow does not import: the study's own import of it says why
        return
    if tracking_uri is None:
        return
    try:
        from service._tracking import client_for

        client_for(tracking_uri)  # a database store checks (or creates) MLflow's tables
    except Exception:  # noqa: BLE001 - opening the records says what is wrong, with the study's context
        pass


def record_study(
    registry: Registry, space, settings: Settings, *, warm_start: Optional[str] = None, register: Optional[str] = None,
    source: Optional[str] = None,
) -> StudyRecord:
    """A new registry row (status queued) for `space`, its stores named by `settings`."""
    study_id = new_study_id(space.name)
    if warm_start:
        warm_start = registry.find_or_raise_by_id(warm_start).id
    return registry.create(
        study_id=study_id,
        name=space.name,
        space_text=space.text,
        space_source=source or space.source,
        space_overrides=list(space.overrides),
        metrics=space.metrics,
        modes=space.modes,
        optuna_storage=settings.optuna_storage,
        optuna_study_name=study_id,
        mlflow_tracking_uri=settings.tracking_uri,
        warm_start_from=warm_start,
        register_model=register,
    )


def plan_warm_start(registry: Registry, source_id: str, space, show_progress: bool) -> list:
    """The earlier study's finished trials, translated into the new space (see service/_warmstart.py)."""
    from service._optuna import load_study
    from service._warmstart import WarmStartError, plan_warm_start as plan

    source = registry.find_or_raise_by_id(source_id)
    study = load_study(source.optuna_storage, source.optuna_study_name)
    if study is None:
        raise StudyError(f"study {source.id} has no trials yet to warm-start from")
    try:
        warm = plan(study, space, source_label=source.id)
    except WarmStartError as exc:
        raise StudyError(str(exc)) from None
    messages = list(warm.messages)
    source_epochs = _max_epochs_of(source)
    if warm.trials and source_epochs not in (None, space.budget.max_epochs):
        messages.append(f"study {source.id} trained up to {source_epochs} epochs per trial, this one "
                        f"{space.budget.max_epochs}: the seeded values were measured at another budget")
    if show_progress:
        for line in messages:
            print(f"warm start: {line}", file=sys.stderr, flush=True)
    return warm.trials


def _max_epochs_of(record: StudyRecord) -> Optional[int]:
    """budget.max_epochs of a recorded study's space (None when its text no longer parses here)."""
    from service.space import SpaceError, parse_space

    try:
        return parse_space(record.space_text, overrides=record.space_overrides, check_data=False).budget.max_epochs
    except SpaceError:
        return None


def resume_study(
    study_id: str,
    settings: Settings,
    *,
    show_progress: bool = True,
    ray_address: Optional[str] = None,
    register: Optional[str] = None,
    wait_for_report: bool = True,
) -> StudySummary:
    """Continue a stopped, failed or crashed study: finished trials are kept, unfinished ones continue."""
    from service._ray import check_reachable

    if ray_address:
        check_reachable(ray_address)
    registry = open_registry(settings.registry_url)
    record = registry.find_or_raise_by_id(study_id)  # the caller checked that it may resume (Studies.resume)
    space = space_of(record)
    # A refused token or a Ray that cannot start fails here, before anything moves.
    connect_ahead(ray_address, space.source, stores_of(record, settings).tracking_uri)
    registry.update(record.id, stop_requested_at=None)
    return run_study(registry, record, space, stores_of(record, settings), resume=True, ray_address=ray_address,
                     show_progress=show_progress, register=register or record.register_model,
                     wait_for_report=wait_for_report)


def run_registered_study(
    study_id: str, settings: Settings, *, show_progress: bool = True, ray_address: Optional[str] = None,
) -> StudySummary:
    """The driver of a study recorded earlier (by the API): `hpsearch run --study ID`.

    The space, its stores, warm start and model registration all come from the registry row. A study that
    already ran continues from its saved Tune state (the API's resume launches this too); a new one starts.
    A space that does not hold on this machine (its data files are missing here, say) fails the study with the
    reason, where `hpsearch status` shows it."""
    from ray.tune import Tuner

    from service._clock import now
    from service._studylog import append_log
    from service.space import SpaceError, TrainablePolicy

    registry = open_registry(settings.registry_url)
    record = registry.find_or_raise_by_id(study_id)
    if record.status == StudyStatus.SUCCEEDED:
        raise StudyError(f"study {record.id} already succeeded; nothing to run")
    try:
        # A cluster's driver runs only the trainables its admin admitted (HPSEARCH_TRAINABLE_MODULES), checked
        # on the name before anything is imported, as the API checked them, then on the function it names.
        policy = TrainablePolicy.from_env()
        space = space_of(record, trainables=policy)
        policy.check_loaded(space.trainable)
    except SpaceError as exc:
        append_log(str(settings.log_path(record.id)), f"study {record.id} cannot start here: {exc}")
        registry.update(record.id, status=StudyStatus.FAILED, finished_at=now(), error=str(exc))
        raise StudyError(str(exc)) from None
    stores = stores_of(record, settings)
    resume = Tuner.can_restore(str(record.tune_path or stores.tune_dir / record.id))
    seed_trials = []
    if not resume and record.warm_start_from:
        seed_trials = plan_warm_start(registry, record.warm_start_from, space, show_progress)
    return run_study(registry, record, space, stores, resume=resume, seed_trials=seed_trials, ray_address=ray_address,
                     show_progress=show_progress, register=record.register_model)


def space_of(record: StudyRecord, trainables=None):
    """The registry row's space, parsed as it was submitted (`trainables`: the admission policy, default local). Relative data paths resolve from the folder of
    the file it came from when that folder is here, else from HPSEARCH_DATA_DIR (a cluster's data volume),
    else from the current directory."""
    from service.space import parse_space

    base_dir = None
    if record.space_source and os.path.isabs(record.space_source) and os.path.isdir(os.path.dirname(record.space_source)):
        base_dir = os.path.dirname(record.space_source)
    base_dir = base_dir or os.environ.get("HPSEARCH_DATA_DIR") or None
    return parse_space(
        record.space_text, source=record.space_source or "<registry>", overrides=record.space_overrides,
        base_dir=base_dir, trainables=trainables,
    )


def stores_of(record: StudyRecord, settings: Settings) -> Settings:
    """The stores a study was created with (its MLflow and Optuna never move), under today's registry."""
    return Settings(home=settings.home, tracking_uri=record.mlflow_tracking_uri,
                    optuna_storage=record.optuna_storage, registry_url=settings.registry_url)


# -- One run of a study, start to end -----------------------------------------------------------------------
def run_study(
    registry: Registry,
    record: StudyRecord,
    space,
    stores: Settings,
    *,
    resume: bool,
    seed_trials: list = (),
    ray_address: Optional[str] = None,
    show_progress: bool = True,
    register: Optional[str] = None,
    wait_for_report: bool = True,
) -> StudySummary:
    """Open the study's records, fit its Tuner, judge the outcome, close the records, then draw the last
    report (`wait_for_report` False: a child process draws it while this returns)."""
    from service._ray import quiet_libraries

    quiet_libraries()
    connect_ahead(ray_address, space.source, stores.tracking_uri)  # a no-op when the caller connected already
    from service._progress import announce
    from service._records import close_failed_start, close_records, open_records
    from service._report_drawer import draw_last_report
    from service._tuner import build_tuner

    ctx = open_records(registry, record, space, stores, resume=resume, ray_address=ray_address,
                       show_progress=show_progress, register=register)
    announce(ctx)
    checkpoints: dict[str, str] = {}
    try:
        tuner = build_tuner(ctx, resume=resume, seed_trials=list(seed_trials))
        started = time.monotonic()
        results = tuner.fit()
        fit_seconds = time.monotonic() - started
        checkpoints = _checkpoints_by_trial(results)
        outcome = _judge(ctx, fit_seconds=fit_seconds)
        if outcome.status != StudyStatus.STOPPED and _tell_held(ctx):  # a stopped study tells them on resume
            outcome = _judge(ctx, fit_seconds=fit_seconds)  # the trials held back count now
    except KeyboardInterrupt:
        outcome = StudyOutcome(StudyStatus.STOPPED, "interrupted")
    except StudyError as exc:
        close_failed_start(ctx, registry, str(exc))
        raise
    except Exception as exc:  # the study itself failed; keep the reason where people look
        logger.exception("study %s failed", ctx.study_id)
        outcome = StudyOutcome(StudyStatus.FAILED, f"{type(exc).__name__}: {exc}")
    summary = close_records(ctx, registry, outcome, checkpoints)
    draw_last_report(ctx, wait=wait_for_report)
    return summary


def _tell_held(ctx) -> int:
    """Deterministic mode: tell the trials that finished but whose turn to be told never came (the study ended
    first); how many. Only for a study that ends here: a stopped one's resumed searcher tells them in turn."""
    from service._optuna import load_study, tell_held

    study = load_study(ctx.optuna_storage, ctx.study_id) if ctx.space.sampler.deterministic else None
    return tell_held(study) if study is not None else 0


def _judge(ctx, *, fit_seconds: float) -> StudyOutcome:
    from service._optuna import LOST_ATTR, load_study, noted_trials, own_trials, ran_out_of_time

    from service.space import build_sampler

    study = load_study(ctx.optuna_storage, ctx.study_id)
    trials = own_trials(study) if study is not None else []
    budget = ctx.space.budget
    # A loaded study has a default sampler: ask the space's own grid whether it has points left.
    grid_exhausted = study is not None and ctx.space.sampler.type == "grid" and build_sampler(ctx.space).is_exhausted(study)
    return study_outcome(
        trials,
        planned=budget.trials,
        max_failed_trials=budget.max_failed_trials,
        # budget.time counts every run's trial time: the progress callback notes on the study when it is spent.
        out_of_time=bool(budget.time_s) and (
            fit_seconds >= budget.time_s * 0.98 or (study is not None and ran_out_of_time(study))),
        grid_exhausted=grid_exhausted,
        study_id=ctx.study_id,
        # Trials failed because their workers were lost more often than max_retries: not their own fault.
        lost=noted_trials(study, LOST_ATTR) if study is not None else frozenset(),
    )


def _checkpoints_by_trial(results) -> dict[str, str]:
    """Tune trial id -> folder of the trial's last checkpoint."""
    found = {}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        if trial_id and result.checkpoint is not None:
            found[trial_id] = result.checkpoint.path
    return found
