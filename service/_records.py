"""A study's records in its three stores — the registry row, the MLflow run, the Optuna study — opened together
when a driver starts the study and closed together when it ends, so that they tell the same story.

The Optuna study is the source of truth for trials: closing reads it once and writes the counts, the best
trial and the Pareto front to both the MLflow run and the registry row. A study whose driver died is closed by
whoever notices (`close_abandoned`), with the same words.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from service._clock import now
from service._context import StudyContext
from service._driver import driver_id
from service._optuna import (
    LOST_ATTR,
    RECONCILED_ATTR,
    RETRIES_ATTR,
    TUNE_TRIAL_ID_ATTR,
    TrialCounts,
    best_trial,
    load_study,
    noted_retries,
    own_trials,
    pareto_front,
    ran_out_of_time,
    reconcile_running,
    tell_held,
    trial_note,
)
from service._outcome import StudyOutcome
from service._registry import Registry, StudyRecord
from service._settings import Settings
from service._states import StudyStatus, TrialLabel, trial_label
from service._studylog import append_log
from service._summary import StudySummary
from service._tracking import (
    PARENT_TAG,
    TAG_LAST_REPORT,
    TAG_REASON,
    TAG_RETRIES,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_TUNE_ID,
    client_for,
    get_or_create_experiment,
    log_best_model,
    log_params,
    record_best,
    record_outcome,
    record_pareto_front,
    register_best_model,
    start_parent_run,
    trial_run_name,
)

logger = logging.getLogger(__name__)


def open_records(
    registry: Registry,
    record: StudyRecord,
    space,
    stores: Settings,
    *,
    resume: bool,
    ray_address: Optional[str] = None,
    show_progress: bool = True,
    register: Optional[str] = None,
) -> StudyContext:
    """The study's MLflow experiment and run (made on its first start, running again on a resume), its registry
    row marked running by this driver, and a line in its log. Returns the context the run hands around."""
    client = client_for(stores.tracking_uri)
    experiment_id = record.mlflow_experiment_id or get_or_create_experiment(client, space.name)
    parent_run_id = record.mlflow_parent_run_id
    if parent_run_id is None:
        parent_run_id = start_parent_run(client, experiment_id, record.id, space)
    else:
        client.update_run(parent_run_id, status="RUNNING")
        # A last report of the study's earlier run still being drawn is no longer wanted (service/_report_drawer.py).
        client.set_tag(parent_run_id, TAG_LAST_REPORT, "not drawn: the study was resumed")
    ctx = StudyContext(
        study_id=record.id,
        space=space,
        stores=stores,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        tune_path=Path(record.tune_path) if record.tune_path else stores.tune_dir / record.id,
        ray_address=ray_address,
        show_progress=show_progress,
        register=register,
    )
    registry.update(
        record.id,
        status=StudyStatus.RUNNING,
        started_at=record.started_at or now(),
        finished_at=None,
        error=None,
        mlflow_experiment_id=experiment_id,
        mlflow_parent_run_id=parent_run_id,
        tune_path=str(ctx.tune_path),
        driver=driver_id(),
        heartbeat_at=now(),
    )
    where = f"on the Ray cluster at {ray_address}" if ray_address else "on an embedded Ray"
    append_log(ctx.log_path, f"study {record.id} {'resumed' if resume else 'started'} by {driver_id()} {where}")
    return ctx


def close_records(
    ctx: StudyContext, registry: Registry, outcome: StudyOutcome, checkpoints: dict[str, str]
) -> StudySummary:
    """Write the outcome everywhere: trials left running are failed in Optuna (unless the study stopped and
    will resume them), the best trial and its model, the Pareto front and the status go to the study's MLflow
    run, and the same numbers to its registry row (the last report follows: service/_report_drawer.py). `checkpoints` maps Tune trial ids to their
    last checkpoint folder (the best one becomes `best_model/`)."""
    study = load_study(ctx.optuna_storage, ctx.study_id)
    client = client_for(ctx.stores.tracking_uri)
    if study is None:  # the study ended before its first trial was asked for (the Optuna study is made then)
        status = StudyStatus.FAILED if outcome.status == StudyStatus.SUCCEEDED else outcome.status
        return _close(ctx, registry, client, StudyOutcome(status, outcome.error or "the study ended before its first trial"),
                      TrialCounts(), {})
    if outcome.status != StudyStatus.STOPPED:
        if ctx.space.sampler.deterministic:
            tell_held(study)  # finished trials held back for their turn (the study failed before it came)
        reconcile_running(study, "budget.time was spent before it ended" if ran_out_of_time(study)
                          else f"the study ended before it did ({outcome.error or outcome.status})")
    trials = own_trials(study)
    close_trial_runs(client, ctx.experiment_id, ctx.parent_run_id, ctx.study_id, study, ctx.space)
    counts = TrialCounts.of(trials)
    best = best_trial(study, trials)
    front = pareto_front(study)
    error = outcome.error
    registered = None
    if best is not None:
        record_best(client, ctx.experiment_id, ctx.parent_run_id, ctx.study_id, ctx.metric, best)
        registered, model_error = _log_best_model(ctx, client, best, checkpoints)
        error = "; ".join(e for e in (error, model_error) if e) or None
    if front:
        record_pareto_front(client, ctx.experiment_id, ctx.parent_run_id, ctx.study_id, front)
    fields = {
        "retries": noted_retries(study, trials),
        "best_value": best.value if best is not None else None,
        "best_params": dict(best.params) if best is not None else None,
        "best_trial": best.number if best is not None else None,
        "pareto_front": front,
        "registered_model": registered,
    }
    return _close(ctx, registry, client, StudyOutcome(outcome.status, error), counts, fields)


def _close(ctx: StudyContext, registry: Registry, client, outcome: StudyOutcome, counts: TrialCounts, fields: dict) -> StudySummary:
    record_outcome(client, ctx.parent_run_id, outcome.status, counts.as_fields(), outcome.error)
    keep_running = outcome.status == StudyStatus.STOPPED  # they resume from their checkpoints
    record = registry.update(
        ctx.study_id, status=outcome.status, finished_at=now(), error=outcome.error,
        **{**counts.as_fields(), "n_running": counts.n_running if keep_running else 0}, **fields,
    )
    summary = StudySummary.of(record)
    best = "" if summary.best_value is None else f"; best {ctx.metric} {summary.best_value:.4f} (trial {summary.best_trial})"
    append_log(ctx.log_path, f"study {ctx.study_id} {outcome.status}: trials {summary.n_trials}, completed "
                             f"{summary.n_completed}, pruned {summary.n_pruned}, failed {summary.n_failed}{best}"
                             f"{'; ' + summary.error if summary.error else ''}")
    return summary


def _log_best_model(ctx: StudyContext, client, best, checkpoints: dict[str, str]) -> tuple[Optional[str], Optional[str]]:
    """`best_model/` on the study's run, and its registration with `--register`: (registered name, error)."""
    checkpoint_dir = checkpoints.get(best.user_attrs.get(TUNE_TRIAL_ID_ATTR, ""))
    if not checkpoint_dir:
        return None, ("no checkpoint of the best trial to register" if ctx.register else None)
    log_best_model(client, ctx.parent_run_id, checkpoint_dir, ctx.space, trial=best.number, value=best.value,
                   params=best.params)
    if not ctx.register:
        return None, None
    try:
        return register_best_model(ctx.stores.tracking_uri, ctx.parent_run_id, checkpoint_dir, ctx.register), None
    except Exception as exc:  # noqa: BLE001 - the study's results stand; say why registering failed
        logger.warning("could not register the best model as %s: %s", ctx.register, exc)
        return None, f"registering the best model failed: {exc}"


def close_failed_start(ctx: StudyContext, registry: Registry, error: str) -> None:
    """A study that could not start here (Ray unreachable, a refused token, no state to resume from)."""
    append_log(ctx.log_path, f"study {ctx.study_id} failed: {error}")
    registry.update(ctx.study_id, status=StudyStatus.FAILED, finished_at=now(), error=error)
    record_outcome(client_for(ctx.stores.tracking_uri), ctx.parent_run_id, StudyStatus.FAILED, {}, error)


def close_abandoned(registry: Registry, record: StudyRecord, log_path: str, status: StudyStatus, reason: str) -> StudyRecord:
    """Close a study whose driver ended without closing it: counts from Optuna, its MLflow run ended, a line in
    its log, and the registry row marked `status` with `reason` (and how to continue, when it can).

    Its Optuna trials left RUNNING stay so: `resume` continues them (Tune restores them from their
    checkpoints), and the driver that finishes the study reconciles whatever is still RUNNING then. The trial
    table shows them as `interrupted` meanwhile."""
    fields: dict = {}
    study = load_study(record.optuna_storage, record.optuna_study_name)
    if study is not None:  # else the row's counts stand: no trial was ever asked for
        counts = TrialCounts.of(own_trials(study))
        fields = {**counts.as_fields(), "n_running": 0}
    resumable = not (record.status == StudyStatus.QUEUED and status == StudyStatus.STOPPED)
    error = f"{reason}; `hpsearch resume {record.id}` continues it" if resumable else reason
    if record.mlflow_parent_run_id:
        try:
            client = client_for(record.mlflow_tracking_uri)
            if study is not None:
                close_trial_runs(client, record.mlflow_experiment_id, record.mlflow_parent_run_id, record.id, study)
            record_outcome(client, record.mlflow_parent_run_id, status, fields or {}, error)
        except Exception as exc:  # noqa: BLE001 - MLflow down: the registry still says what happened
            logger.warning("could not close the MLflow runs of study %s: %s", record.id, exc)
    append_log(log_path, f"study {record.id} {status}: {reason}")
    return registry.update(record.id, status=status, error=error, finished_at=now(), **fields)


# MLflow's run status for each of our trial labels once the study has ended.
_RUN_STATUS = {TrialLabel.COMPLETED: "FINISHED", TrialLabel.PRUNED: "FINISHED", TrialLabel.FAILED: "FAILED",
               TrialLabel.INTERRUPTED: "KILLED"}


def close_trial_runs(client, experiment_id: str, parent_run_id: str, study_id: str, study, space=None) -> None:
    """Make MLflow agree with Optuna, trial by trial: every own trial of the study has exactly one child run,
    closed with the status and `hpsearch.state` of its Optuna trial (a trial still running in Optuna — a
    stopped or crashed study's, which `resume` continues — is `interrupted` and KILLED), and a failed one says
    why. A trial that never started (the study ended while it waited for a worker) gets a closed run saying so,
    tagged with its Tune trial id: a resumed study starts the trial in that run (service/_trial_runs.py), not in a
    second one. Runs the callbacks closed already keep their state. Every run's `hpsearch.retries` is the count noted on
    the Optuna study (which the registry's total sums): a driver resumed after a head loss counts on from
    Tune's saved state, which can be older than the last restarts."""
    from mlflow.entities import RunTag

    runs = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_STUDY}` = '{study_id}'", max_results=50000)
    by_number = {int(r.data.tags[TAG_TRIAL]): r for r in runs if r.data.tags.get(TAG_TRIAL, "").isdigit()}
    name_params = tuple(list(space.params)[:3]) if space is not None else tuple()
    notes = study.user_attrs  # read once: each read is a storage query
    for trial in own_trials(study):
        label = trial_label(trial.state)
        if label in (TrialLabel.RUNNING, TrialLabel.WAITING):
            label = TrialLabel.INTERRUPTED
        reason = _why_failed(notes, trial) if label == TrialLabel.FAILED else ""
        run = by_number.get(trial.number)
        if run is None:  # its run is made when it starts: it never did
            tune_id = trial.user_attrs.get(TUNE_TRIAL_ID_ATTR)
            run = client.create_run(
                experiment_id, run_name=trial_run_name(trial.number, trial.params, name_params),
                tags={PARENT_TAG: parent_run_id, TAG_STUDY: study_id, TAG_TRIAL: str(trial.number),
                      **({TAG_TUNE_ID: tune_id} if tune_id else {})},
            )
            log_params(client, run.info.run_id, {**(space.fixed if space is not None else {}), **trial.params})
            reason = f"it never started: {reason or 'the study ended while it waited for a worker'}"
        tags = []
        retries = trial_note(notes, RETRIES_ATTR, trial.number, 0)
        if run.data.tags.get(TAG_RETRIES, "0") != str(retries):  # no tag says 0, as Optuna's no note does
            tags.append(RunTag(TAG_RETRIES, str(retries)))
        closed = run.info.status != "RUNNING" and run.data.tags.get(TAG_STATE) == label.value  # by the callbacks
        if not closed:
            tags.append(RunTag(TAG_STATE, label.value))
            if reason and not run.data.tags.get(TAG_REASON):
                tags.append(RunTag(TAG_REASON, reason[:5000]))
        if tags:
            client.log_batch(run.info.run_id, tags=tags)
        if not closed:
            client.set_terminated(run.info.run_id, status=_RUN_STATUS[label])


def _why_failed(notes, trial) -> str:
    """What the driver noted on the study (its `notes`) about a failed trial that its callbacks never closed."""
    return (trial_note(notes, LOST_ATTR, trial.number) or trial_note(notes, RECONCILED_ATTR, trial.number)
            or "the trial failed")


def delete_records(registry: Registry, record: StudyRecord, home: Path, log_path: str) -> dict:
    """Remove a finished study from every store: its MLflow runs (MLflow's own delete: they leave the UI and
    the API; `mlflow gc` removes them from the store for good), its Optuna study, its Tune folder (only under
    the state directory), its log, and last its registry row. Returns what went."""
    import shutil

    import optuna

    from service._optuna import open_storage

    gone: dict[str, object] = {"mlflow_runs": 0, "optuna_study": False, "tune_folder": False, "log": False}
    if record.mlflow_experiment_id:
        client = client_for(record.mlflow_tracking_uri)
        runs = client.search_runs([record.mlflow_experiment_id], filter_string=f"tags.`{TAG_STUDY}` = '{record.id}'",
                                  max_results=50000)
        for run in runs:
            client.delete_run(run.info.run_id)
        gone["mlflow_runs"] = len(runs)
    if load_study(record.optuna_storage, record.optuna_study_name) is not None:
        optuna.delete_study(study_name=record.optuna_study_name, storage=open_storage(record.optuna_storage))
        gone["optuna_study"] = True
    tune_root = (home / "tune").resolve()
    if record.tune_path and Path(record.tune_path).resolve().is_relative_to(tune_root) and Path(record.tune_path).is_dir():
        shutil.rmtree(record.tune_path)
        gone["tune_folder"] = True
    if Path(log_path).exists():
        Path(log_path).unlink()
        gone["log"] = True
    registry.delete(record.id)
    return {"id": record.id, "deleted": gone}
