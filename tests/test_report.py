"""The study report: real in-memory Optuna studies, from a healthy one to those with nothing to plot yet."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

import optuna

from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from service._report import HTML_FILE, NOTES_FILE, TRIALS_FILE, write_study_report  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)

# Drawing plots takes seconds per test: out of the fast lane.
pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SINGLE_OBJECTIVE_PLOTS = [
    "optimization_history",
    "param_importances",
    "parallel_coordinate",
    "intermediate_values",
    "slice",
    "contour",
]
ALL_PLOTS = SINGLE_OBJECTIVE_PLOTS + ["pareto_front"]
N_TRIALS = 25


# ------------------------------------------------------------------------------------------------ studies


def _tell_with_curve(study, trial, state: TrialState, epochs: int, final: float) -> None:
    for epoch in range(1, epochs + 1):
        trial.report(final - 0.1 / epoch, epoch)
    study.tell(trial, final if state == TrialState.COMPLETE else None, state=state)


def _mixed_study() -> optuna.Study:
    """25 trials: every 5th fails, every 4th is pruned after 3 epochs, the rest complete 10 epochs.

    `momentum` is suggested only with `optimizer="sgd"`; trial 2 reports a NaN learning-curve point.
    """
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(N_TRIALS):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        width = trial.suggest_int("width", 8, 64)
        optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        if optimizer == "sgd":
            trial.suggest_float("momentum", 0.5, 0.99)
        trial.set_user_attr("tune_trial_id", f"tune_{i:05d}")
        acc = 0.9 - abs(math.log10(lr) + 3) / 10 + width / 1000
        if i % 5 == 4:
            study.tell(trial, state=TrialState.FAIL)
        elif i % 4 == 3:
            _tell_with_curve(study, trial, TrialState.PRUNED, epochs=3, final=acc)
        else:
            if i == 2:
                trial.report(float("nan"), 0)
            _tell_with_curve(study, trial, TrialState.COMPLETE, epochs=10, final=acc)
    return study


def _multi_objective_study() -> optuna.Study:
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for _ in range(8):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        width = trial.suggest_int("width", 8, 64)
        study.tell(trial, [0.9 - abs(math.log10(lr) + 3) / 10, width * 1000.0])
    return study


def _empty() -> optuna.Study:
    return optuna.create_study()


def _all_failed() -> optuna.Study:
    study = optuna.create_study()
    for _ in range(3):
        study.tell(study.ask({"lr": FloatDistribution(1e-4, 1e-1, log=True)}), state=TrialState.FAIL)
    return study


def _one_completed() -> optuna.Study:
    study = optuna.create_study()
    trial = study.ask({"lr": FloatDistribution(1e-4, 1e-1, log=True), "width": FloatDistribution(8, 64)})
    _tell_with_curve(study, trial, TrialState.COMPLETE, epochs=2, final=0.5)
    return study


def _categorical_and_single_valued() -> optuna.Study:
    """Only categorical params, one of them with a single choice."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for i in range(4):
        trial = study.ask(
            {"optimizer": CategoricalDistribution(["adam", "sgd"]), "act": CategoricalDistribution(["relu"])}
        )
        study.tell(trial, float(i))
    return study


def _conditional_only() -> optuna.Study:
    """Two params that never appear in the same trial, and NaN learning-curve points."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    for i in range(6):
        trial = study.ask()
        trial.suggest_float("a" if i % 2 else "b", 0.0, 1.0)
        trial.report(float("nan"), 1)
        trial.report(1.0, 2)
        study.tell(trial, float(i))
    return study


def _same_value_everywhere() -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(3):
        trial = study.ask({"lr": FloatDistribution(1e-4, 1e-1, log=True)})
        study.tell(trial, 1.0)
    return study


def _running_and_waiting() -> optuna.Study:
    study = optuna.create_study()
    study.ask({"lr": FloatDistribution(1e-4, 1e-1, log=True)})
    study.enqueue_trial({"lr": 1e-3})
    return study


# ---------------------------------------------------------------------------------------------- helpers


def _notes(out: Path) -> str:
    return (out / NOTES_FILE).read_text()


def _read_trials(out: Path) -> pd.DataFrame:
    # Strings throughout, so an empty cell stays "" rather than becoming NaN.
    return pd.read_csv(out / TRIALS_FILE, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed") / "report"  # not created yet: the report creates it
    paths = write_study_report(_mixed_study(), out, metric_names=["val_acc"])
    return out, paths


# ---------------------------------------------------------------------------------- single objective


def _interactive(out: Path) -> set[str]:
    """The plots report.html draws: its sections' names."""
    return set(re.findall(r'<section id="plot-([a-z_]+)">', (out / HTML_FILE).read_text()))


@pytest.mark.parametrize("name", SINGLE_OBJECTIVE_PLOTS)
def test_report_draws_plot_interactive_and_as_png(mixed_report, name):
    out, paths = mixed_report
    png = out / f"{name}.png"
    assert png in paths and name in _interactive(out)
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert png.stat().st_size > 1000


def test_report_html_draws_with_no_network(mixed_report):
    """plotly.js is inside the page (once), not fetched from a CDN."""
    out, _ = mixed_report
    text = (out / HTML_FILE).read_text()
    assert "<script src=" not in text  # nothing is fetched: not plotly.js, not MathJax
    assert text.count("* plotly.js v") == 1  # the library's banner: inlined once for the whole report
    plots = text.split("</head>", 1)[1]
    assert plots.count("Plotly.newPlot") == len(SINGLE_OBJECTIVE_PLOTS) and "https://" not in plots


def test_report_returns_paths_in_a_stable_order(mixed_report):
    out, paths = mixed_report
    expected = [out / f"{name}.png" for name in SINGLE_OBJECTIVE_PLOTS]
    assert paths == expected + [out / HTML_FILE, out / TRIALS_FILE, out / NOTES_FILE]
    assert all(p.stat().st_size > 0 for p in paths)


def test_report_single_objective_has_no_pareto_front_and_no_skips(mixed_report):
    out, _ = mixed_report
    assert not (out / "pareto_front.png").exists() and "pareto_front" not in _interactive(out)
    notes = _notes(out)
    assert "All plots were drawn." in notes
    assert "15 COMPLETE, 5 PRUNED, 5 FAIL" in notes


def test_report_trials_csv_has_one_row_per_trial_and_named_columns(mixed_report):
    out, _ = mixed_report
    trials = _read_trials(out)
    assert list(trials.columns) == [
        "number",
        "state",
        "val_acc",
        "epochs",
        "param.lr",
        "param.width",
        "param.optimizer",
        "param.momentum",
        "duration_s",
        "datetime_start",
        "datetime_complete",
        "attr.tune_trial_id",
    ]
    assert list(trials["number"]) == [str(i) for i in range(N_TRIALS)]
    assert trials["state"].value_counts().to_dict() == {"COMPLETE": 15, "PRUNED": 5, "FAIL": 5}
    assert list(trials["attr.tune_trial_id"]) == [f"tune_{i:05d}" for i in range(N_TRIALS)]


def test_report_trials_csv_leaves_absent_values_empty(mixed_report):
    out, _ = mixed_report
    trials = _read_trials(out)
    by_state = {state: rows for state, rows in trials.groupby("state")}

    # A conditional param that did not apply is an empty cell, not a zero or "nan".
    assert (trials.loc[trials["param.optimizer"] == "adam", "param.momentum"] == "").all()
    assert (trials.loc[trials["param.optimizer"] == "sgd", "param.momentum"] != "").all()
    assert set(trials["param.optimizer"]) == {"adam", "sgd"}

    assert set(by_state["COMPLETE"]["epochs"]) == {"10"}
    assert set(by_state["PRUNED"]["epochs"]) == {"3"}
    assert set(by_state["FAIL"]["epochs"]) == {""}
    assert (by_state["COMPLETE"]["val_acc"] != "").all()
    assert (by_state["FAIL"]["val_acc"] == "").all()
    assert (trials["duration_s"].astype(float) >= 0).all()


def test_report_closes_every_figure(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    write_study_report(_multi_objective_study(), tmp_path, metric_names=["val_acc", "n_params"])
    assert plt.get_fignums() == before


def test_report_module_import_leaves_matplotlib_alone():
    # Importing must not pick a backend: the driver process may plot for itself.
    code = "import sys, service._report; print('matplotlib.pyplot' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ----------------------------------------------------------------------------------- multi-objective


def test_report_multi_objective_draws_pareto_front_and_skips_intermediate_values(tmp_path):
    paths = write_study_report(_multi_objective_study(), tmp_path, metric_names=["val_acc", "n_params"])

    names = {p.name for p in paths}
    for name in ["pareto_front", "optimization_history", "param_importances", "slice", "contour"]:
        assert f"{name}.png" in names and name in _interactive(tmp_path)
    assert "intermediate_values.png" not in names and "intermediate_values" not in _interactive(tmp_path)
    assert "- intermediate_values: the study has several objectives" in _notes(tmp_path)

    trials = _read_trials(tmp_path)
    assert list(trials.columns[:5]) == ["number", "state", "val_acc", "n_params", "epochs"]
    history = (tmp_path / HTML_FILE).read_text().split('id="plot-optimization_history"')[1].split("</section>")[0]
    assert "val_acc" in history  # target_name, not "Objective"


# ------------------------------------------------------------------------------------ degenerate studies


@pytest.mark.parametrize(
    ("build", "skipped"),
    [
        (_empty, SINGLE_OBJECTIVE_PLOTS),
        (_all_failed, SINGLE_OBJECTIVE_PLOTS),
        (_running_and_waiting, SINGLE_OBJECTIVE_PLOTS),
        (_one_completed, ["param_importances", "contour"]),
        (_categorical_and_single_valued, ["intermediate_values"]),
        (_conditional_only, ["param_importances", "contour"]),
        (_same_value_everywhere, ["param_importances", "intermediate_values", "contour"]),
    ],
    ids=lambda x: x.__name__.strip("_") if callable(x) else None,
)
def test_report_degenerate_study_skips_plots_with_notes(tmp_path, build: Callable, skipped: list[str]):
    study = build()
    paths = write_study_report(study, tmp_path, metric_names=["loss"])

    names = {p.name for p in paths}
    notes = _notes(tmp_path)
    for name in SINGLE_OBJECTIVE_PLOTS:
        if name in skipped:
            assert f"- {name}: " in notes, notes
            assert not (tmp_path / f"{name}.png").exists() and name not in _interactive(tmp_path)
        else:
            assert f"{name}.png" in names and name in _interactive(tmp_path), notes
    assert all(p.exists() for p in paths)
    assert len(_read_trials(tmp_path)) == len(study.trials)


@pytest.mark.parametrize("build", [_one_completed, _categorical_and_single_valued, _same_value_everywhere,
                                   _conditional_only], ids=lambda build: build.__name__.strip("_"))
def test_report_of_a_degenerate_study_warns_nothing(tmp_path, build: Callable):
    """Optuna's experimental notes and matplotlib's notes on axes of a single point are not for the user; they
    are silenced by where they come from, not by changing every thread's warning filters for a while."""
    import warnings

    study = build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_study_report(study, tmp_path, metric_names=["loss"])

    assert [f"{w.category.__name__}: {w.message} ({w.filename})" for w in caught] == []


def test_report_top_params_one_skips_contour(tmp_path):
    paths = write_study_report(
        _multi_objective_study(), tmp_path, metric_names=["val_acc", "n_params"], top_params=1
    )

    assert tmp_path / "slice.png" in paths
    assert tmp_path / "contour.png" not in paths
    assert "- contour: needs >= 2 params, has 1" in _notes(tmp_path)


@pytest.mark.parametrize(
    ("metric_names", "top_params", "message"),
    [
        (["val_acc"], 2, "has 2 objective(s)"),
        (["val_acc", "n_params", "extra"], 2, "has 2 objective(s)"),
        (["val_acc", "n_params"], 0, "`top_params` is 0"),
    ],
)
def test_report_rejects_bad_arguments(tmp_path, metric_names, top_params, message):
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_study_report(study, tmp_path, metric_names=metric_names, top_params=top_params)
