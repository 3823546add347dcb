"""What the study verbs answer, as JSON-ready dicts: a study, its trial table, its log, its best configuration.

The CLI prints these for a local registry; the API service returns the very same dicts, so `hpsearch status
ID` prints the same thing whichever it asks. Store URLs never carry a password here. Nothing here imports Ray.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Optional

from service._optuna import TUNE_TRIAL_ID_ATTR, load_study, own_trials
from service._registry import StudyRecord
from service._settings import mask_url
from service._states import TrialLabel, trial_label
from service._studylog import read_log
from service._summary import StudySummary


def study_dict(record: StudyRecord) -> dict:
    """The registry row, without the space text."""
    data = asdict(record)
    data.pop("space_text", None)
    for key in ("optuna_storage", "mlflow_tracking_uri"):
        data[key] = mask_url(data[key])
    for key, value in data.items():
        if isinstance(value, dt.datetime):
            data[key] = value.isoformat()
        elif hasattr(value, "value") and isinstance(value, str):  # an enum of words
            data[key] = value.value
    return data


def trial_rows(record: StudyRecord) -> list[dict]:
    """One row per trial of the study's own (warm-start seeds left out), from its Optuna study; empty before
    the study has started. A trial left running by a driver that is gone shows as `interrupted`."""
    study = load_study(record.optuna_storage, record.optuna_study_name)
    if study is None:
        return []
    rows = []
    for t in own_trials(study):
        label = trial_label(t.state)
        if label == TrialLabel.RUNNING and record.status.finished:
            label = TrialLabel.INTERRUPTED  # `resume` continues it
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({
            "number": t.number,
            "state": label.value,
            "values": list(t.values) if t.values is not None else None,
            "epochs": len(t.intermediate_values),
            "params": dict(t.params),
            "duration_s": duration,
            "tune_trial_id": t.user_attrs.get(TUNE_TRIAL_ID_ATTR),
        })
    return rows


def status_dict(record: StudyRecord) -> dict:
    """The study, its trial table, and the summary `submit --json` prints when it ends."""
    data = study_dict(record)
    data["trials"] = trial_rows(record)
    data["summary"] = StudySummary.of(record).to_dict()
    return data


def logs_dict(record: StudyRecord, log_path: str, offset: int = 0) -> dict:
    """The study's event log from `offset` on; `finished` tells a follower that nothing more will come."""
    found = read_log(log_path, offset)
    text, next_offset = found if found is not None else ("", offset)
    return {"study_id": record.id, "text": text, "offset": next_offset, "finished": record.status.finished,
            "status": record.status.value}


def best_dict(record: StudyRecord) -> Optional[dict]:
    """The best configuration and the `fixed:` block that retrains it (`hpsearch best -o`); None before a
    trial completed."""
    if record.best_params is None:
        return None
    import yaml

    header = f"# best of study {record.id}: {','.join(record.metrics)} = {record.best_value}\n"
    return {
        "study_id": record.id,
        "metric": record.metrics[0] if len(record.metrics) == 1 else record.metrics,
        "best_value": record.best_value,
        "best_params": record.best_params,
        "fixed_block": header + yaml.safe_dump({"fixed": record.best_params}, sort_keys=False),
    }
