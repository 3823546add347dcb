"""The report's two tables: every trial of a study in `trials.csv`, and what the report drew in
`report_notes.txt` (service/_report.py draws the plots and calls these)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState


def param_names(trials: list[FrozenTrial]) -> list[str]:
    """Every param of `trials`, in the order they were first suggested."""
    return list(dict.fromkeys(name for t in trials for name in t.params))



def write_trials_csv(trials: list[FrozenTrial], metric_names: list[str], path: Path) -> Path:
    params = param_names(trials)
    attrs = list(dict.fromkeys(key for t in trials for key in t.user_attrs))
    columns = [
        "number",
        "state",
        *metric_names,
        "epochs",
        *(f"param.{p}" for p in params),
        "duration_s",
        "datetime_start",
        "datetime_complete",
        *(f"attr.{a}" for a in attrs),
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for t in trials:
            writer.writerow(_trial_row(t, metric_names, params, attrs))
    return path


def _trial_row(
    t: FrozenTrial, metric_names: list[str], params: list[str], attrs: list[str]
) -> dict[str, Any]:
    """One CSV row; a missing value (no result, a conditional param that did not apply) is an empty cell."""
    values = t.values or [None] * len(metric_names)
    return {
        "number": t.number,
        "state": t.state.name,
        **dict(zip(metric_names, values)),
        "epochs": max(t.intermediate_values, default=None),
        **{f"param.{p}": t.params.get(p) for p in params},
        "duration_s": t.duration.total_seconds() if t.duration is not None else None,
        "datetime_start": _iso(t.datetime_start),
        "datetime_complete": _iso(t.datetime_complete),
        **{f"attr.{a}": _cell(t.user_attrs.get(a)) for a in attrs},
    }


def _iso(when: Any) -> Optional[str]:
    return when.isoformat() if when is not None else None


def _cell(value: Any) -> Any:
    # Lists and dicts as JSON, so a spreadsheet or `json.loads` can read them back.
    return json.dumps(value, default=str) if isinstance(value, (list, dict, tuple)) else value


def write_notes(study: optuna.Study, trials: list[FrozenTrial], notes: list[str], path: Path) -> Path:
    counts = Counter(t.state.name for t in trials)
    by_state = ", ".join(f"{counts[s.name]} {s.name}" for s in TrialState if counts[s.name])
    summary = f"Study {study.study_name!r}: {len(trials)} trial(s)" + (f" ({by_state})" if by_state else "")
    lines = [summary + "."]
    if notes:
        lines += ["Plots not drawn:", *(f"- {note}" for note in notes)]
    else:
        lines.append("All plots were drawn.")
    path.write_text("\n".join(lines) + "\n")
    return path
