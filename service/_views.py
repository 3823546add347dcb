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
    """The best configuration, and `space`: a complete space file that trains it once (`hpsearch best -o`
    writes it, `hpsearch train` runs it); None before a trial completed."""
    if record.best_params is None:
        return None
    return {
        "study_id": record.id,
        "metric": record.metrics[0] if len(record.metrics) == 1 else record.metrics,
        "best_value": record.best_value,
        "best_trial": record.best_trial,
        "best_params": record.best_params,
        "space": retrain_text(record),
    }


def retrain_text(record: StudyRecord) -> str:
    """The study's space as submitted (overrides applied), turned into the one configuration its best trial
    trained: the searched values join `fixed:`, nothing is searched, one trial; data, metric and epochs as
    the study had them."""
    import yaml

    from service.space import parse_space

    space = parse_space(record.space_text, source=record.space_source or "<registry>",
                        overrides=record.space_overrides, check_data=False)
    data = {
        "name": f"{space.name}-best"[:120],
        "description": f"the best trial ({record.best_trial}) of study {record.id}: "
                       f"{','.join(record.metrics)} = {record.best_value}",
        "retrain_of": record.id,
        **{k: v for k, v in space.to_dict().items() if k not in ("name", "description")},
    }
    data["budget"] = {"trials": 1, "max_epochs": space.budget.max_epochs, "concurrency": 1,
                      "max_retries": space.budget.max_retries}
    data["sampler"], data["scheduler"] = {"type": "random", "seed": 0}, {"type": "fifo"}
    data["fixed"] = {**space.fixed, **record.best_params}
    data["params"] = {}
    header = (f"# the best configuration of study {record.id} ({','.join(record.metrics)} = {record.best_value});\n"
              f"# `hpsearch train THIS_FILE` trains it once, as one MLflow run linked to the study\n")
    return header + yaml.safe_dump(data, sort_keys=False)
