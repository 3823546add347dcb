"""What the study verbs answer — list, status, logs, stop, best — from a registry and the stores it names.

The CLI calls these against the local registry; the API service calls the same functions against the
cluster's registry and returns their dicts as JSON, so `hpsearch status ID` prints the same thing either way.
Nothing here imports Ray.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import asdict
from typing import Callable, Optional

from service._registry import Registry, StudyRecord
from service._states import FINISHED_STATUSES, StudyStatus

QUEUED, STOPPED, SUCCEEDED = StudyStatus.QUEUED, StudyStatus.STOPPED, StudyStatus.SUCCEEDED
from service._settings import Settings
from service._studylog import append_log, read_log

# Optuna's states, as the progress lines and MLflow tags name them.
_STATE_WORDS = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


class StudyConflict(Exception):
    """The study is not in a state that allows what was asked (stopping a finished study, say)."""


def study_dict(record: StudyRecord) -> dict:
    """The registry row as JSON-ready data, without the space text and with passwords in URLs masked."""
    data = asdict(record)
    data.pop("space_text", None)
    for key in ("optuna_storage", "mlflow_tracking_uri"):
        data[key] = mask_url(data[key])
    for key, value in data.items():
        if isinstance(value, dt.datetime):
            data[key] = value.isoformat()
    return data


def mask_url(url: Optional[str]) -> Optional[str]:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`; other strings unchanged."""
    if not url or "@" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        scheme, sep, rest = url.partition("://")
        userinfo, at, host = rest.rpartition("@")
        return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***{at}{host}" if ":" in userinfo else url


def trials_of(record: StudyRecord) -> list[dict]:
    """One row per trial of the study's own (warm-start seeds left out), from its Optuna study; empty
    before the study has started."""
    study = _optuna_study(record)
    if study is None:
        return []
    from service._searcher import TUNE_TRIAL_ID_ATTR
    from service._warmstart import SOURCE_ATTR

    rows = []
    for t in study.get_trials(deepcopy=False):
        if SOURCE_ATTR in t.user_attrs:
            continue
        values = list(t.values) if t.values is not None else None
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        state = _STATE_WORDS.get(t.state.name, t.state.name.lower())
        if state == "running" and record.status in FINISHED_STATUSES:
            state = "interrupted"  # left running by a driver that ended; `resume` continues it
        rows.append({
            "number": t.number,
            "state": state,
            "values": values,
            "epochs": len(t.intermediate_values),
            "params": dict(t.params),
            "duration_s": duration,
            "tune_trial_id": t.user_attrs.get(TUNE_TRIAL_ID_ATTR),
        })
    return rows


def status_dict(record: StudyRecord) -> dict:
    """The study, its trial table, and the summary `submit --json` prints when it ends."""
    trials = trials_of(record)
    data = study_dict(record)
    data["trials"] = trials
    data["summary"] = summary_dict(record, trials)
    return data


def summary_dict(record: StudyRecord, trials: list[dict]) -> dict:
    """The same keys as the local `submit --json` summary (service._runner.StudySummary)."""
    single = len(record.metrics) == 1
    best_trial = None
    if single and record.best_value is not None:
        matches = [t["number"] for t in trials if t["state"] == "completed" and t["values"] == [record.best_value]]
        best_trial = matches[0] if matches else None
    pareto = None
    if not single:
        pareto = _pareto_front(record)
    return {
        "study_id": record.id,
        "name": record.name,
        "status": record.status,
        "best_value": record.best_value,
        "best_params": record.best_params,
        "best_trial": best_trial,
        "metric": record.metrics[0] if single else record.metrics,
        "mode": record.modes[0] if single else record.modes,
        "n_trials": record.n_trials,
        "n_completed": record.n_completed,
        "n_pruned": record.n_pruned,
        "n_failed": record.n_failed,
        "mlflow_tracking_uri": mask_url(record.mlflow_tracking_uri),
        "mlflow_experiment_id": record.mlflow_experiment_id,
        "mlflow_parent_run_id": record.mlflow_parent_run_id,
        "optuna_storage": mask_url(record.optuna_storage),
        "optuna_study_name": record.optuna_study_name,
        "tune_path": record.tune_path,
        "error": record.error,
        "pareto_front": pareto,
        "registered_model": record.registered_model,
    }


def _pareto_front(record: StudyRecord) -> Optional[list]:
    study = _optuna_study(record)
    if study is None:
        return None
    from service._warmstart import SOURCE_ATTR

    try:
        front = [t for t in study.best_trials if SOURCE_ATTR not in t.user_attrs]
    except ValueError:  # no completed trial yet
        return None
    return [{"trial": t.number, "values": list(t.values), "params": dict(t.params)} for t in front] or None


def best_dict(record: StudyRecord) -> dict:
    """The best configuration, and the `fixed:` block that retrains it (`hpsearch best -o`)."""
    if record.best_params is None:
        raise StudyConflict(f"study {record.id} has no completed trial yet (status {record.status})")
    return {
        "study_id": record.id,
        "metric": record.metrics[0] if len(record.metrics) == 1 else record.metrics,
        "best_value": record.best_value,
        "best_params": record.best_params,
        "fixed_block": best_fixed_block(record),
    }


def best_fixed_block(record: StudyRecord) -> str:
    """A space-compatible `fixed:` block with the best parameters, headed by where they came from."""
    import yaml

    header = f"# best of study {record.id}: {','.join(record.metrics)} = {record.best_value}\n"
    return header + yaml.safe_dump({"fixed": record.best_params}, sort_keys=False)


def logs_dict(record: StudyRecord, settings: Settings, offset: int = 0) -> dict:
    """The study's event log from `offset` on; `finished` tells a follower that nothing more will come."""
    found = read_log(str(settings.log_path(record.id)), offset)
    text, next_offset = found if found is not None else ("", offset)
    return {"study_id": record.id, "text": text, "offset": next_offset, "finished": record.status in FINISHED_STATUSES,
            "status": record.status}


def request_stop(
    registry: Registry, record: StudyRecord, settings: Settings, *, driver_alive: Callable[[StudyRecord], bool],
    force: bool = False, end_driver: Optional[Callable[[StudyRecord], None]] = None,
) -> StudyRecord:
    """Ask the study's driver to stop (it polls the registry and ends the study as Ctrl-C does). A study whose
    driver is gone — still queued, or crashed — is marked stopped here. With `force`, a live driver is ended
    (`end_driver`) instead of asked: for a driver that does not answer; its study resumes from Tune's last
    snapshot, as after a crash."""
    if record.status in FINISHED_STATUSES:
        raise StudyConflict(f"study {record.id} is already {record.status}; there is nothing to stop")
    now = dt.datetime.now(dt.timezone.utc)
    record = registry.update(record.id, stop_requested_at=record.stop_requested_at or now)
    append_log(str(settings.log_path(record.id)), "stop requested" + (" (forced)" if force else ""))
    if force and end_driver is not None and driver_alive(record):
        end_driver(record)
        deadline = time.monotonic() + 15
        while driver_alive(record) and time.monotonic() < deadline:
            time.sleep(0.5)
        record = registry.find_by_id(record.id) or record
        if record.status in FINISHED_STATUSES:  # it closed the study itself on its way out
            return record
        return mark_driver_gone(registry, record, settings, STOPPED, "stopped by force: its driver was ended")
    if driver_alive(record):
        return record
    return mark_driver_gone(registry, record, settings, STOPPED, "stopped while no driver was running it")


def mark_driver_gone(registry: Registry, record: StudyRecord, settings: Settings, status: str, reason: str) -> StudyRecord:
    """Close a study whose driver ended without closing it, with counts from Optuna.

    Its Optuna trials left RUNNING stay so: `resume` continues them (Tune restores them from their
    checkpoints), and the driver that finishes the study reconciles whatever is still RUNNING then. The trial
    table shows them as `interrupted` meanwhile."""
    counts = {}
    rows = trials_of(record)  # empty when the Optuna study was never made: the row's counts stand
    if rows:
        counts = {f"n_{s}": sum(t["state"] == s for t in rows) for s in ("completed", "pruned", "failed")}
        counts["n_trials"] = len(rows)
    append_log(str(settings.log_path(record.id)), f"study {record.id} {status}: {reason}")
    error = f"{reason}; `hpsearch resume {record.id}` continues it" if record.status != QUEUED or status != STOPPED else reason
    return registry.update(record.id, status=status, n_running=0, error=error,
                           finished_at=dt.datetime.now(dt.timezone.utc), **counts)


def check_resumable(record: StudyRecord, *, driver_alive: bool) -> None:
    if record.status == SUCCEEDED:
        raise StudyConflict(f"study {record.id} already succeeded; nothing to resume (submit a new study instead)")
    if record.status not in FINISHED_STATUSES and driver_alive:
        raise StudyConflict(f"study {record.id} is still {record.status}; stop it first (`hpsearch stop {record.id}`)")


def _optuna_study(record: StudyRecord):
    """The study's Optuna study, or None when it has not been created yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=record.optuna_study_name, storage=_storage(record.optuna_storage))
    except KeyError:  # "Record does not exist": the driver has not started it
        return None


@functools.lru_cache(maxsize=8)
def _storage(url: str):
    """One Optuna storage (its engine and connection pool) per URL for the life of the process: opening one
    checks Optuna's schema version, which costs more than reading a study (the API answers status from it)."""
    from service._runner import _optuna_storage

    return _optuna_storage(url)

