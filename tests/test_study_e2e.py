"""End to end on real parts: an embedded Ray runs the trials, Optuna and the registry live in SQLite files,
MLflow in a SQLite store; results are read back through the stock Optuna and MLflow clients."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from service.cli import main
from support import assert_records_agree, wait_for

pytestmark = pytest.mark.e2e

USER_TRAINABLES = Path(__file__).parent / "user_trainables"


@pytest.fixture(scope="module")
def ray_cluster():
    """One embedded Ray for the module (the runner reuses an initialised Ray); the user trainables'
    folder is on the workers' path, as the runner puts a space file's folder there."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(USER_TRAINABLES)}},
    )
    yield
    ray.shutdown()


@pytest.fixture
def stores(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.syspath_prepend(str(USER_TRAINABLES))  # the driver imports user trainables too
    return tmp_path


def _submit(space_path: Path, *extra: str):
    result = CliRunner().invoke(main, ["submit", str(space_path), "--json", "--quiet", *extra])
    assert result.stdout.strip(), result.output
    return result, json.loads(result.stdout)


def _study(summary):
    return optuna.load_study(study_name=summary["optuna_study_name"], storage=summary["optuna_storage"])


def _report(client, run_id: str) -> dict:
    """The study's last report on its run, {path: size}: `hpsearch submit` returns before a child process has
    drawn and uploaded it (service/_report_drawer.py), so it is waited for, as a user opening MLflow would, until
    the run says it is drawn (an earlier redraw may be there already)."""
    from service._tracking import TAG_LAST_REPORT

    def settled():
        state = client.get_run(run_id).data.tags.get(TAG_LAST_REPORT, "drawing")
        return None if state.startswith("drawing") else state

    assert wait_for(settled, 120, "the study's last report") == "drawn"
    return {a.path: a.file_size for a in client.list_artifacts(run_id, "report")}


def _child_runs(summary):
    client = MlflowClient(summary["mlflow_tracking_uri"])
    runs = client.search_runs(
        [summary["mlflow_experiment_id"]],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary['mlflow_parent_run_id']}'",
        max_results=1000,
    )
    return client, runs


DIGITS_SPACE = """
name: e2e-digits
trainable: cnn
data: {dataset: digits, val_fraction: 0.2}
metric: val_acc
mode: max
budget: {trials: 6, max_epochs: 3, concurrency: 2}
sampler: {type: random, seed: 3}
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
params:
  lr:          {type: float, low: 1.0e-3, high: 0.05, log: true}
  optimizer:   {type: categorical, choices: [sgd, adam]}
  momentum:    {type: float, low: 0.5, high: 0.95, when: {optimizer: sgd}}
  maps:        {type: int, low: 8, high: 16, step: 8}
fixed: {conv_blocks: 1, kernel_size: 3, dense_units: 32}
"""


def test_submit_digits_study_records_every_trial_in_optuna_and_mlflow(ray_cluster, stores):
    space = stores / "digits.yaml"
    space.write_text(DIGITS_SPACE)

    result, summary = _submit(space, "--register", "e2e-digits-best")

    assert result.exit_code == 0, result.output
    assert summary["status"] == "succeeded"
    for key in ("study_id", "best_value", "best_params", "n_trials", "n_completed", "n_pruned", "n_failed",
                "mlflow_experiment_id", "mlflow_parent_run_id", "optuna_storage", "optuna_study_name"):
        assert key in summary
    assert summary["optuna_storage"].startswith("sqlite:///")

    # Optuna: every trial is there; ASHA's early stops are PRUNED with their learning curve.
    trials = _study(summary).get_trials()
    assert len(trials) == 6 == summary["n_trials"]
    states = {t.state for t in trials}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    for t in trials:
        steps = sorted(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert steps == [1, 2, 3]
            assert t.value == pytest.approx(t.intermediate_values[3])
        else:
            assert steps and steps == list(range(1, steps[-1] + 1)) and steps[-1] < 3
        # The conditional parameter exists exactly where its condition holds.
        assert ("momentum" in t.params) == (t.params["optimizer"] == "sgd")
    assert {t.params["optimizer"] for t in trials} == {"sgd", "adam"}
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert summary["best_value"] == pytest.approx(max(t.value for t in completed))

    # MLflow: one child run per trial, nested under the study's run, with per-epoch metrics as steps.
    client, runs = _child_runs(summary)
    assert len(runs) == 6
    by_number = {int(r.data.tags["hpsearch.trial"]): r for r in runs}
    assert sorted(by_number) == [t.number for t in trials]
    for t in trials:
        run = by_number[t.number]
        expected = "completed" if t.state == TrialState.COMPLETE else "pruned"
        assert run.data.tags["hpsearch.state"] == expected
        assert run.data.tags["hpsearch.rung"] == str(max(t.intermediate_values))
        assert run.info.run_name.startswith(f"trial-{t.number:04d}")
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == sorted(t.intermediate_values)
        assert [m.value for m in history] == pytest.approx([t.intermediate_values[s] for s in sorted(t.intermediate_values)])
        for name in ("val_loss", "train_loss"):
            assert len(client.get_metric_history(run.info.run_id, name)) == len(history)
        assert run.data.params["kernel_size"] == "3"  # fixed values are logged too
        assert ("momentum" in run.data.params) == (run.data.params["optimizer"] == "sgd")
        assert "data" not in run.data.params
    best_runs = [r for r in runs if r.data.tags.get("hpsearch.best") == "true"]
    assert len(best_runs) == 1 and int(best_runs[0].data.tags["hpsearch.trial"]) == summary["best_trial"]

    parent = client.get_run(summary["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_val_acc"] == pytest.approx(summary["best_value"])
    report = _report(client, parent.info.run_id)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"space.yaml", "best.json", "best_model", "report"} <= artifacts
    assert report.get("report/report.html", 0) > 0
    for name in ("optimization_history", "parallel_coordinate", "intermediate_values"):
        assert report.get(f"report/{name}.png", 0) > 0, name
    # Importances need two completed trials (ASHA may have stopped all but one of six): drawn, or explained.
    notes = Path(client.download_artifacts(parent.info.run_id, "report/report_notes.txt", str(stores))).read_text()
    for name in ("param_importances", "slice", "contour"):
        drawn = report.get(f"report/{name}.png", 0) > 0
        assert drawn or f"{name}:" in notes, (name, notes)
    assert report["report/trials.csv"] > 0
    history = client.get_metric_history(parent.info.run_id, "best_val_acc_so_far")
    assert [m.step for m in history] == list(range(1, summary["n_completed"] + 1))
    assert [m.value for m in history] == sorted(m.value for m in history)  # never gets worse
    assert history[-1].value == pytest.approx(summary["best_value"])

    # The best model: its checkpoint rebuilds the trained network, which scores the reported val_acc.
    import torch
    from trainables import load_dataset, load_model

    local = Path(client.download_artifacts(parent.info.run_id, "best_model", str(stores / "best_model")))
    config = json.loads((local / "model_config.json").read_text())
    assert config["trial"] == summary["best_trial"] and config["params"] == summary["best_params"]
    model = load_model(str(local / "checkpoint.pt"))
    data = load_dataset(config["data"], "cpu")
    with torch.no_grad():
        accuracy = (model(data.x_val).argmax(dim=1) == data.y_val).float().mean().item()
    assert accuracy == pytest.approx(summary["best_value"], abs=1e-6)
    version = client.search_model_versions("name = 'e2e-digits-best'")[0]
    assert version.run_id == parent.info.run_id
    assert summary["registered_model"] == f"e2e-digits-best/{version.version}"

    # The registry agrees, and `status` / `list` / `best` read it.
    runner = CliRunner()
    status = json.loads(runner.invoke(main, ["status", summary["study_id"], "--json"]).stdout)
    assert status["status"] == "succeeded" and status["n_trials"] == 6
    assert status["n_completed"] == summary["n_completed"] and status["n_pruned"] == summary["n_pruned"]
    listed = json.loads(runner.invoke(main, ["list", "--json"]).stdout)
    assert summary["study_id"] in [s["id"] for s in listed["studies"]]
    out = stores / "best.yaml"
    best = runner.invoke(main, ["best", summary["study_id"], "-o", str(out)])
    assert best.exit_code == 0
    import yaml

    written = yaml.safe_load(out.read_text())
    assert summary["best_params"].items() <= written["fixed"].items() and written["params"] == {}

    # Retraining the best: one run, linked to the study, the same final metric within noise (same seed).
    trained = runner.invoke(main, ["train", str(out), "--json", "--quiet"])
    assert trained.exit_code == 0, trained.output
    retrain = json.loads(trained.stdout)
    assert retrain["state"] == "completed" and retrain["retrain_of"] == summary["study_id"]
    assert retrain["value"] == pytest.approx(summary["best_value"], abs=0.02)
    run = client.get_run(retrain["mlflow_run_id"])
    assert run.data.tags["hpsearch.retrain_of"] == summary["study_id"] and "mlflow.parentRunId" not in run.data.tags
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2, 3]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "best_model")} >= {"best_model/checkpoint.pt"}


FLAKY_SPACE = """
name: e2e-flaky
trainable: "flaky:train"
metric: score
mode: max
budget: {{trials: 10, max_epochs: 3, concurrency: 2{extra}}}
sampler: {{type: random, seed: 7}}
scheduler: {{type: fifo}}
params:
  x: {{type: float, low: 0.0, high: 1.0}}
"""


def test_failing_trials_are_recorded_with_reason_and_the_study_goes_on(ray_cluster, stores):
    space = stores / "flaky.yaml"
    space.write_text(FLAKY_SPACE.format(extra=""))

    result, summary = _submit(space)

    assert result.exit_code == 0, result.output
    trials = _study(summary).get_trials()
    assert len(trials) == 10
    raised = [t for t in trials if t.params["x"] > 0.8]
    diverged = [t for t in trials if 0.6 < t.params["x"] <= 0.8]
    healthy = [t for t in trials if t.params["x"] <= 0.6]
    assert raised and diverged and healthy, "seed 7 must sample all three kinds"
    assert all(t.state == TrialState.FAIL for t in raised + diverged)
    assert all(t.state == TrialState.COMPLETE for t in healthy)
    assert summary["n_failed"] == len(raised) + len(diverged)

    _, runs = _child_runs(summary)
    by_number = {int(r.data.tags["hpsearch.trial"]): r for r in runs}
    for t in raised:
        run = by_number[t.number]
        assert run.info.status == "FAILED" and run.data.tags["hpsearch.state"] == "failed"
        assert "out of this model's range" in run.data.tags["hpsearch.fail_reason"]
    for t in diverged:
        run = by_number[t.number]
        assert run.info.status == "FAILED"
        # Stopped at the epoch its score turned NaN, never completed with a later finite one.
        assert run.data.tags["hpsearch.fail_reason"] == "score was nan in epoch 2"
        assert run.data.tags["hpsearch.rung"] == "2"
    assert summary["best_value"] == pytest.approx(max(t.value for t in healthy))
    assert math.isfinite(summary["best_value"])
    # With several completed trials every single-objective plot is drawn, failed trials notwithstanding.
    client = MlflowClient(summary["mlflow_tracking_uri"])
    report = _report(client, summary["mlflow_parent_run_id"])
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values", "slice"):
        assert report.get(f"report/{name}.png", 0) > 0, name


def test_max_failed_trials_stops_the_study_and_exits_1(ray_cluster, stores):
    space = stores / "flaky.yaml"
    space.write_text(FLAKY_SPACE.format(extra=", max_failed_trials: 0").replace("e2e-flaky", "e2e-flaky-budget"))

    result, summary = _submit(space)

    assert result.exit_code == 1
    assert summary["status"] == "failed"
    assert "max_failed_trials=0" in summary["error"]
    assert summary["n_failed"] >= 1
    assert summary["n_trials"] < 10
    parent = MlflowClient(summary["mlflow_tracking_uri"]).get_run(summary["mlflow_parent_run_id"])
    assert parent.info.status == "FAILED"
    assert _study(summary).get_trials(states=(TrialState.RUNNING,)) == []


MULTI_SPACE = """
name: e2e-multi
trainable: mlp
data: {dataset: digits}
metric: [val_acc, n_params]
mode: [max, min]
budget: {trials: 6, max_epochs: 2, concurrency: 2}
sampler: {type: nsga2, seed: 0, population_size: 4}
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
params:
  units:         {type: int, low: 8, high: 256, log: true}
  hidden_layers: {type: int, low: 1, high: 3}
fixed: {lr: 0.01}
"""


def test_multi_objective_study_reports_the_pareto_front(ray_cluster, stores, monkeypatch):
    monkeypatch.setenv("HPSEARCH_REPORT_INTERVAL_S", "0")  # also redraw the plots after every trial
    space = stores / "multi.yaml"
    space.write_text(MULTI_SPACE)

    result, summary = _submit(space)

    assert result.exit_code == 0, result.output
    study = _study(summary)
    assert len(study.directions) == 2
    front = {p["trial"] for p in summary["pareto_front"]}
    assert front == {t.number for t in study.best_trials} and front
    client, runs = _child_runs(summary)
    by_number = {int(r.data.tags["hpsearch.trial"]): r for r in runs}
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        run = by_number[t.number]
        assert t.values == [pytest.approx(run.data.metrics["val_acc"]), run.data.metrics["n_params"]]
    tagged = {int(r.data.tags["hpsearch.trial"]) for r in runs if r.data.tags.get("hpsearch.pareto") == "true"}
    assert tagged == front
    report = set(_report(client, summary["mlflow_parent_run_id"]))
    assert {"report/pareto_front.png", "report/report.html"} <= report
    # The report that stays is the last one, drawn once every trial had ended, not a redraw from mid-run.
    csv_path = client.download_artifacts(summary["mlflow_parent_run_id"], "report/trials.csv", str(stores))
    with open(csv_path, newline="") as fh:
        drawn = {int(row["number"]): row["state"] for row in csv.DictReader(fh)}
    assert drawn == {t.number: t.state.name for t in study.get_trials()}


def test_warm_start_seeds_a_new_study_with_compatible_finished_trials(ray_cluster, stores):
    first = stores / "first.yaml"
    first.write_text(FLAKY_SPACE.format(extra="").replace("e2e-flaky", "e2e-warm-source").replace("trials: 10", "trials: 8"))
    _, source = _submit(first)
    source_trials = _study(source).get_trials()
    narrow = stores / "second.yaml"
    narrow.write_text(
        FLAKY_SPACE.format(extra="").replace("e2e-flaky", "e2e-warm").replace("trials: 10", "trials: 3")
        .replace("high: 1.0", "high: 0.5").replace("max_epochs: 3", "max_epochs: 4")
    )

    result = CliRunner().invoke(main, ["submit", str(narrow), "--json", "--warm-start", source["study_id"]])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "warm start: kept" in result.stderr
    assert "trained up to 3 epochs per trial, this one 4" in result.stderr
    trials = _study(summary).get_trials()
    seeded = [t for t in trials if "warm_start.source" in t.user_attrs]
    expected = [t for t in source_trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.params["x"] <= 0.5]
    assert sorted(t.user_attrs["warm_start.number"] for t in seeded) == sorted(t.number for t in expected)
    assert all(t.user_attrs["warm_start.source"] == source["study_id"] for t in seeded)
    # The seeded trials inform the sampler but are not this study's trials: not counted, not in MLflow.
    assert summary["n_trials"] == 3 == len(trials) - len(seeded)
    _, runs = _child_runs(summary)
    assert len(runs) == 3


def test_warm_start_from_unknown_study_exits_2(stores):
    space = stores / "flaky.yaml"
    space.write_text(FLAKY_SPACE.format(extra=""))
    result = CliRunner().invoke(main, ["submit", str(space), "--warm-start", "no-such-study"])
    assert result.exit_code == 2
    assert "no-such-study" in result.stderr


REUSED_WORKER_SPACE = """
name: e2e-reused-worker-dies
trainable: "dies:OnReuse"
metric: score
mode: max
budget: {{trials: 4, max_epochs: 2, concurrency: 1, max_retries: 1}}
sampler: {{type: random, seed: 3}}
scheduler: {{type: fifo}}
params:
  x: {{type: float, low: 0.0, high: 1.0}}
fixed: {{marker: "{marker}"}}
"""


def test_a_worker_that_dies_as_it_is_handed_the_next_trial_costs_that_trial_one_retry(ray_cluster, stores):
    # The trainable's worker dies once, in Tune's reset of it for the second trial (service/_tune_fixes.py):
    # that trial is started again on a new worker, and counted once.
    marker = stores / "died"
    space = stores / "reused.yaml"
    space.write_text(REUSED_WORKER_SPACE.format(marker=marker))

    result, summary = _submit(space)

    assert result.exit_code == 0, result.output
    assert marker.exists(), "the worker never died: the test did not test anything"
    assert (summary["status"], summary["n_trials"], summary["n_completed"], summary["n_failed"]) == ("succeeded", 4, 4, 0)
    records = assert_records_agree(summary["study_id"], {
        "HPSEARCH_REGISTRY_URL": f"sqlite:///{stores / 'home' / 'registry.db'}",
        "HPSEARCH_OPTUNA_STORAGE": summary["optuna_storage"], "MLFLOW_TRACKING_URI": summary["mlflow_tracking_uri"]})
    assert records["record"].retries == 1
    retries = {n: run.data.tags.get("hpsearch.retries") for n, run in records["runs"].items()}
    assert retries == {0: None, 1: "1", 2: None, 3: None}
    assert all(run.data.tags["hpsearch.rung"] == "2" for run in records["runs"].values())


LOST_TWICE_SPACE = """
name: e2e-lost-twice
trainable: "dies:in_epoch_2"
metric: score
mode: max
budget: {trials: 4, max_epochs: 3, concurrency: 2, max_retries: 1, max_failed_trials: 0}
sampler: {type: random, seed: 3}
scheduler: {type: fifo}
params:
  x: {type: float, low: 0.0, high: 1.0}
"""


def test_a_trial_whose_worker_dies_more_often_than_max_retries_fails_as_lost_and_the_study_goes_on(ray_cluster, stores):
    # Trial 1 (x = 0.708) loses its worker in epoch 2 every time: retried once, then Tune gives up on it. Not its
    # own fault: outside the failure budget (max_failed_trials: 0), and every record says why.
    from service._optuna import LOST_ATTR

    space = stores / "lost.yaml"
    space.write_text(LOST_TWICE_SPACE)

    result, summary = _submit(space)

    assert result.exit_code == 0, result.output
    assert (summary["status"], summary["n_trials"], summary["n_completed"], summary["n_failed"]) == ("succeeded", 4, 3, 1)
    records = assert_records_agree(summary["study_id"], {
        "HPSEARCH_REGISTRY_URL": f"sqlite:///{stores / 'home' / 'registry.db'}",
        "HPSEARCH_OPTUNA_STORAGE": summary["optuna_storage"], "MLFLOW_TRACKING_URI": summary["mlflow_tracking_uri"]})
    lost = records["runs"][1]
    assert records["trials"][1].params["x"] > 0.7 and lost.info.status == "FAILED"
    reason = lost.data.tags["hpsearch.fail_reason"]
    assert reason.startswith("its worker failed 2 times, more than max_retries=1 allows: ") and "died" in reason
    assert lost.data.tags["hpsearch.retries"] == "1" and records["record"].retries == 1
    assert _study(summary).user_attrs[f"{LOST_ATTR}.1"] == reason
    log = CliRunner().invoke(main, ["logs", summary["study_id"]]).stdout
    assert "trial 0001 lost its worker at epoch 1" in log and f"trial 0001 failed    epoch 1/3  {reason}" in log


def test_a_study_in_a_terminal_speaks_in_its_own_lines_only(tmp_path):
    # `hpsearch submit` as a user runs it: an embedded Ray of its own, a new MLflow store, a trial whose worker
    # dies. What it prints is the study's lines: no library banner, no traceback.
    import os
    import subprocess
    import sys

    space = tmp_path / "lost.yaml"
    space.write_text(LOST_TWICE_SPACE.replace("trials: 4", "trials: 2"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSEARCH_", "MLFLOW_"))}
    env.update(HPSEARCH_HOME=str(tmp_path / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               PYTHONPATH=os.pathsep.join([str(USER_TRAINABLES), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "service.cli", "submit", str(space)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "trial 0001 lost its worker at epoch 1" in output and "trial 0001 failed" in output
    for noise in ("Traceback", "Token authentication", "INFO mlflow", "Trials did not complete", "alembic"):
        assert noise not in output, (noise, output[-3000:])


REPORT_SPACE = """
name: e2e-report-after-exit
trainable: "where:train"
metric: score
mode: max
budget: {trials: 4, max_epochs: 1, concurrency: 2}
sampler: {type: random, seed: 1}
scheduler: {type: fifo}
params:
  x: {type: float, low: 0.0, high: 1.0}
fixed: {sleep: 0.1}
"""


def test_a_study_from_a_terminal_returns_with_its_summary_and_its_last_report_follows(tmp_path):
    # `hpsearch submit` as a user runs it (its own embedded Ray): the command prints its summary and exits; the
    # study's last report, drawn by a child process, then lands on the study's MLflow run.
    import os
    import subprocess
    import sys

    space = tmp_path / "report.yaml"
    space.write_text(REPORT_SPACE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSEARCH_", "MLFLOW_"))}
    env.update(HPSEARCH_HOME=str(tmp_path / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               PYTHONPATH=os.pathsep.join([str(USER_TRAINABLES), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "service.cli", "submit", str(space), "--json", "--quiet"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["n_trials"], summary["n_completed"]) == ("succeeded", 4, 4)
    client = MlflowClient(summary["mlflow_tracking_uri"])
    assert client.get_run(summary["mlflow_parent_run_id"]).info.status == "FINISHED"
    report = _report(client, summary["mlflow_parent_run_id"])
    assert report["report/trials.csv"] > 0 and report["report/optimization_history.png"] > 0
    log = (tmp_path / "home" / "logs" / f"{summary['study_id']}.log").read_text()
    assert "not drawn" not in log and "could not draw" not in log, log
