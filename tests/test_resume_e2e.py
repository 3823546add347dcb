"""Stopping and resuming a study with the real command in its own process (its own embedded Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from service._optuna import load_study
from service._registry import Registry
from service._searcher import LOST_REASON
from support import wait_for

pytestmark = pytest.mark.e2e

USER_TRAINABLES = Path(__file__).parent / "user_trainables"

SLOW_SPACE = """
name: {name}
trainable: "slow:train"
metric: score
mode: max
budget: {{trials: 6, max_epochs: 5, concurrency: 2}}
sampler: {{type: random, seed: 1}}
scheduler: {{type: fifo}}
params:
  x: {{type: float, low: 0.0, high: 1.0}}
fixed: {{sleep: 0.6}}
"""


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(
        HPSEARCH_HOME=str(tmp_path / "home"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        PYTHONPATH=str(USER_TRAINABLES),
    )
    return env


def _hpsearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


def _submit_slow(tmp_path: Path, name: str) -> tuple[subprocess.Popen, dict]:
    """`hpsearch submit` of SLOW_SPACE in its own process (6 trials of 5 epochs, 2 at a time); (driver, env)."""
    space = tmp_path / "slow.yaml"
    space.write_text(SLOW_SPACE.format(name=name))
    env = _env(tmp_path)
    driver = subprocess.Popen(_hpsearch("submit", str(space), "--json", "--quiet"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return driver, env


def _only_study(tmp_path: Path):
    return Registry(f"sqlite:///{tmp_path / 'home' / 'registry.db'}").list()[0]


def _count_trials(record, *states: TrialState) -> int:
    """How many trials the study's Optuna study holds (in `states`, if given); 0 before it exists. Opened as
    hpsearch opens it: this may be the moment the driver creates Optuna's tables."""
    study = load_study(record.optuna_storage, record.optuna_study_name)
    return 0 if study is None else len(study.get_trials(deepcopy=False, states=states or None))


def _completed(record) -> int:
    return _count_trials(record, TrialState.COMPLETE)


def _registry_has_study(tmp_path: Path) -> bool:
    db = tmp_path / "home" / "registry.db"
    return db.exists() and bool(Registry(f"sqlite:///{db}").list())


def _histories(record):
    client = MlflowClient(record.mlflow_tracking_uri)
    runs = client.search_runs(
        [record.mlflow_experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{record.mlflow_parent_run_id}'",
    )
    numbers = [int(r.data.tags["hpsearch.trial"]) for r in runs]
    assert len(numbers) == len(set(numbers)), f"a trial has more than one run: {sorted(numbers)}"
    return {
        int(r.data.tags["hpsearch.trial"]): (r.info.run_id, [m.step for m in client.get_metric_history(r.info.run_id, "score")])
        for r in runs
    }


@pytest.mark.parametrize("how", ["interrupt", "stop", "stop --force", "kill"])
def test_stopped_or_crashed_study_resumes_without_rerunning_finished_trials(tmp_path, how):
    driver, env = _submit_slow(tmp_path, f"e2e-resume-{how.replace(' --', '-')}")
    try:
        wait_for(lambda: _registry_has_study(tmp_path), 120, "the study to be registered")
        wait_for(lambda: _completed(_only_study(tmp_path)) >= 2, 180, "two completed trials")
        time.sleep(2.5)  # past the 1 s experiment-state snapshot period (see service/_runner.py)
        if how == "interrupt":
            driver.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and the driver exits
            out, err = driver.communicate(timeout=120)
            assert driver.returncode == 1, err[-3000:]
            assert json.loads(out)["status"] == "stopped"
        elif how == "stop":  # `hpsearch stop` from another shell: the driver ends the study as Ctrl-C does
            stopped = subprocess.run(_hpsearch("stop", _only_study(tmp_path).id), env=env, capture_output=True,
                                     text=True, timeout=120)
            assert stopped.returncode == 0, stopped.stderr[-3000:]
            assert stopped.stdout.strip() == f"study {_only_study(tmp_path).id}: stopped"
            out, err = driver.communicate(timeout=120)
            assert driver.returncode == 1, err[-3000:]
            assert json.loads(out)["status"] == "stopped"
        elif how == "stop --force":  # the driver is ended, not asked: as after a crash, but marked stopped
            stopped = subprocess.run(_hpsearch("stop", "--force", _only_study(tmp_path).id), env=env,
                                     capture_output=True, text=True, timeout=120)
            assert stopped.returncode == 0, stopped.stderr[-3000:]
            assert stopped.stdout.strip() == f"study {_only_study(tmp_path).id}: stopped"
            driver.communicate(timeout=60)
            assert driver.returncode == -signal.SIGKILL
        else:
            driver.kill()  # a crash: no chance to save anything beyond the periodic checkpoints
            driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    record = _only_study(tmp_path)
    assert record.status == ("running" if how == "kill" else "stopped")
    if how == "stop --force":
        assert "stopped by force: its driver was ended" in record.error
        trials = json.loads(subprocess.run(_hpsearch("status", record.id, "--json"), env=env, capture_output=True,
                                           text=True, timeout=60).stdout)["trials"]
        assert {t["state"] for t in trials} <= {"completed", "interrupted"}, trials
    if how == "stop":
        log = subprocess.run(_hpsearch("logs", record.id), env=env, capture_output=True, text=True, timeout=60).stdout
        assert "stop requested" in log and f"study {record.id} stopped: " in log, log
    before = _histories(record)
    study = optuna.load_study(study_name=record.optuna_study_name, storage=record.optuna_storage)
    finished_before = {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert len(finished_before) >= 2

    resumed = subprocess.run(_hpsearch("resume", record.id[:20], "--json", "--quiet"), env=env,
                             capture_output=True, text=True, timeout=400)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    assert summary["study_id"] == record.id and summary["status"] == "succeeded"
    study = optuna.load_study(study_name=record.optuna_study_name, storage=record.optuna_storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 6, ([(t.number, t.state.name) for t in study.trials], study.user_attrs)
    assert study.get_trials(states=(TrialState.RUNNING,)) == []
    after = _histories(record)
    for number in finished_before:
        # Finished trials were not run again: same MLflow run, one value per epoch.
        assert after[number] == before[number]
        assert after[number][1] == [1, 2, 3, 4, 5]
    for number, (_, steps) in after.items():
        if study.trials[number].state == TrialState.COMPLETE:
            assert sorted(steps) == [1, 2, 3, 4, 5], (number, steps)  # redone epochs are logged once
    assert Registry(f"sqlite:///{tmp_path / 'home' / 'registry.db'}").find_by_id(record.id).status == "succeeded"


def _tune_saved_state(tune_path: Path, names: tuple) -> dict:
    """The files of Tune's saved state whose names start with `names`, read whole (a file being replaced is
    read again)."""
    files = {}
    for path in tune_path.iterdir():
        if path.name.startswith(names):
            for _ in range(20):
                data = path.read_bytes()
                if data:
                    files[path.name] = data
                    break
                time.sleep(0.1)
    return files


# Tune's saved state is three files, copied one by one to the study's folder after every save: its list of
# trials (experiment_state), the searcher's state and the search generator's count (searcher-state,
# search_gen_state). A driver killed during a copy leaves some of them from one save and the rest from an
# earlier one. Each case puts back one side from an earlier save, as such a copy leaves them.
OLDER = {
    "tune's trial list older": ("experiment_state-",),
    "searcher older": ("searcher-state-", "search_gen_state-"),
}


@pytest.mark.parametrize("older", list(OLDER))
def test_a_study_whose_saved_state_was_copied_half_resumes_with_every_trial_accounted_for(tmp_path, older):
    from support import assert_records_agree

    driver, env = _submit_slow(tmp_path, "e2e-half-copied")
    try:
        wait_for(lambda: _registry_has_study(tmp_path), 120, "the study to be registered")
        record = _only_study(tmp_path)
        tune_path = tmp_path / "home" / "tune" / record.id  # Settings.tune_dir
        wait_for(lambda: _count_trials(record) >= 2 and len(_tune_saved_state(tune_path, OLDER[older])) == len(OLDER[older]),
                  180, "two trials asked for and saved")
        time.sleep(1.5)  # one more save, with both trials in it
        earlier = _tune_saved_state(tune_path, OLDER[older])
        wait_for(lambda: _count_trials(record) >= 4, 180, "two more trials asked for")
        time.sleep(1.5)  # past the next save
        driver.kill()
        driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    for name, data in earlier.items():
        (tune_path / name).write_bytes(data)

    resumed = subprocess.run(_hpsearch("resume", record.id, "--json", "--quiet"), env=env,
                             capture_output=True, text=True, timeout=400)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    study = optuna.load_study(study_name=record.optuna_study_name, storage=record.optuna_storage)
    states = [(t.number, t.state.name) for t in study.trials]
    assert [s for _, s in states].count("COMPLETE") == 6, (states, study.user_attrs)  # the whole budget
    lost = {int(k.rsplit(".", 1)[1]) for k in study.user_attrs if k.startswith("hpsearch.lost.")}
    assert {n for n, s in states if s != "COMPLETE"} == lost, (states, study.user_attrs)  # only lost ones fail
    assert_records_agree(record.id, {"HPSEARCH_REGISTRY_URL": f"sqlite:///{tmp_path / 'home' / 'registry.db'}",
                                     "HPSEARCH_OPTUNA_STORAGE": record.optuna_storage,
                                     "MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})


def test_a_trial_whose_saved_checkpoint_is_gone_resumes_from_its_newest(tmp_path):
    """Tune deletes a trial's older checkpoint as soon as it registers a newer one, and saves its list of them
    only about once a second: a driver killed in between leaves a saved state naming a checkpoint that is gone,
    and a newer one on the storage. Made here on purpose: each running trial's named checkpoint is moved to a
    newer name. Every trial still completes, from the newer checkpoint, each epoch logged once."""
    from ray.tune import ExperimentAnalysis
    from support import assert_records_agree

    driver, env = _submit_slow(tmp_path, "e2e-checkpoint-gone")
    try:
        wait_for(lambda: _registry_has_study(tmp_path), 120, "the study to be registered")
        record = _only_study(tmp_path)
        wait_for(lambda: _completed(record) >= 2, 180, "two completed trials")
        time.sleep(2.5)  # running trials past their first checkpoint, and a save naming it
        driver.kill()
        driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    record = _only_study(tmp_path)
    tune_path = tmp_path / "home" / "tune" / record.id  # Settings.tune_dir
    moved = []
    for trial in ExperimentAnalysis(str(tune_path)).trials:
        if trial.status != "TERMINATED" and trial.checkpoint is not None:
            named = Path(trial.checkpoint.path)
            if named.exists():  # else a newer checkpoint already replaced it, as the kill may leave it
                named.rename(named.with_name(f"checkpoint_{int(named.name.split('_')[1]) + 3:06d}"))
            moved.append(trial.trial_id)
    assert moved, "no running trial with a checkpoint when the driver was killed"

    resumed = subprocess.run(_hpsearch("resume", record.id, "--json", "--quiet"), env=env,
                             capture_output=True, text=True, timeout=400)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert "was gone; it resumes from the one of iteration" in resumed.stderr, resumed.stderr[-3000:]
    study = optuna.load_study(study_name=record.optuna_study_name, storage=record.optuna_storage)
    states = [(t.number, t.state.name) for t in study.trials]
    assert [s for _, s in states].count("COMPLETE") == 6, (states, study.user_attrs)
    # Only a trial asked for after Tune's last save is lost (a new one takes its place); none fails or retries.
    lost = {int(k.rsplit(".", 1)[1]) for k in study.user_attrs if k.startswith("hpsearch.lost.")}
    assert {n for n, s in states if s != "COMPLETE"} == lost, (states, study.user_attrs)
    # Lost either way a restored driver finds it: Tune's saved state lacks it, or the searcher's saved state does
    # (it was asked for after the searcher's last save); which one depends on when the kill came.
    assert all(study.user_attrs[f"hpsearch.lost.{n}"] == LOST_REASON for n in lost), study.user_attrs
    assert not [k for k in study.user_attrs if k.startswith("hpsearch.retries.")], study.user_attrs
    for number, (_, steps) in _histories(record).items():
        if study.trials[number].state == TrialState.COMPLETE:
            assert sorted(steps) == [1, 2, 3, 4, 5], (number, steps)
    assert_records_agree(record.id, {"HPSEARCH_REGISTRY_URL": f"sqlite:///{tmp_path / 'home' / 'registry.db'}",
                                     "HPSEARCH_OPTUNA_STORAGE": record.optuna_storage,
                                     "MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})


ASHA_SPACE = """
name: {name}
trainable: synthetic
metric: val_acc
mode: max
budget: {{trials: 16, max_epochs: 9, concurrency: 1}}
sampler: {{type: tpe, seed: 3, n_startup_trials: 4}}
scheduler: {{type: asha, grace_period: 1, reduction_factor: 3, brackets: 2}}
params:
  lr:     {{type: float, low: 1.0e-3, high: 1.0, log: true}}
  width:  {{type: int, low: 512, high: 1024}}
  warmup: {{type: float, low: 0.0, high: 0.5}}
fixed: {{epoch_seconds: 0.25}}
"""


def _trials_of(record) -> list[tuple]:
    study = optuna.load_study(study_name=record.optuna_study_name, storage=record.optuna_storage)
    return [(t.number, t.params, t.state.name, dict(t.intermediate_values))
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]


def test_a_study_with_asha_brackets_resumed_after_ctrl_c_makes_the_same_trials_as_one_that_ran_through(tmp_path):
    """Tune does not save its scheduler: a resumed ASHA used to start with no values at any rung, so the trials
    after a resume were hardly stopped. Now the rungs are read back from the study's learning curves. At
    concurrency 1 with a seed, a study stopped with Ctrl-C half-way and resumed makes the very same trials (what
    was asked, what ASHA stopped and where, every value) as the same study run through."""
    through_dir, resumed_dir = tmp_path / "through", tmp_path / "resumed"
    for folder in (through_dir, resumed_dir):
        folder.mkdir()
        (folder / "asha.yaml").write_text(ASHA_SPACE.format(name=f"e2e-asha-{folder.name}"))

    env = _env(through_dir)
    ran = subprocess.run(_hpsearch("submit", str(through_dir / "asha.yaml"), "--json", "--quiet"), env=env,
                         capture_output=True, text=True, timeout=400)
    assert ran.returncode == 0, ran.stderr[-3000:]
    through = _trials_of(_only_study(through_dir))
    states = [state for _, _, state, _ in through]
    assert states.count("PRUNED") >= 4 and "COMPLETE" in states, states  # ASHA acted, in both brackets' ways

    env = _env(resumed_dir)
    driver = subprocess.Popen(_hpsearch("submit", str(resumed_dir / "asha.yaml"), "--json", "--quiet"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _registry_has_study(resumed_dir), 120, "the study to be registered")
        record = _only_study(resumed_dir)
        wait_for(lambda: _count_trials(record, TrialState.COMPLETE, TrialState.PRUNED) >= 7, 240,
                 "seven finished trials")
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 1 and json.loads(out)["status"] == "stopped", err[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    assert len(_trials_of(record)) < 16, "the study ended before it was stopped: nothing was resumed"

    resumed = subprocess.run(_hpsearch("resume", record.id, "--json", "--quiet"), env=env,
                             capture_output=True, text=True, timeout=400)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _trials_of(record) == through
