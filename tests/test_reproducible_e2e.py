"""Reproducible studies, end to end on an embedded Ray: the same space with `sampler.seed` run twice gives the
same trials (parameters, states, values) and the same best, at concurrency 1 and, in deterministic mode, at
concurrency > 1. The synthetic trainable makes a trial cost Tune's overhead only."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner

from service.cli import main

pytestmark = pytest.mark.e2e

SPACE = """
name: repro
trainable: synthetic
metric: val_acc
mode: max
budget: {{trials: {trials}, max_epochs: 9, concurrency: {concurrency}}}
sampler: {{type: tpe, seed: 7, n_startup_trials: 3{sampler_extra}}}
scheduler: {{type: asha, grace_period: 1, reduction_factor: 3{scheduler_extra}}}
params:
  lr:        {{type: float, low: 1.0e-3, high: 1.0, log: true}}
  width:     {{type: int, low: 16, high: 1024, log: true}}
  warmup:    {{type: float, low: 0.0, high: 0.5}}
  optimizer: {{type: categorical, choices: [sgd, adam]}}
fixed: {{epoch_seconds: {epoch_seconds}}}
"""


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def stores(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def _run_twice(path, text: str) -> list[tuple[dict, list]]:
    path.write_text(text)
    out = []
    for _ in range(2):
        result = CliRunner().invoke(main, ["submit", str(path), "--json", "--quiet"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        study = optuna.load_study(study_name=summary["optuna_study_name"], storage=summary["optuna_storage"])
        trials = [(t.number, t.params, t.state.name, t.value, dict(t.intermediate_values))
                  for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]
        out.append((summary, trials))
    return out


def _assert_same_study(first, second):
    (summary_a, trials_a), (summary_b, trials_b) = first, second
    assert summary_a["study_id"] != summary_b["study_id"]
    assert trials_a == trials_b
    assert (summary_a["best_trial"], summary_a["best_params"], summary_a["best_value"]) == (
        summary_b["best_trial"], summary_b["best_params"], summary_b["best_value"])
    assert {state for _, _, state, _, _ in trials_a} == {"COMPLETE", "PRUNED"}  # ASHA acted in both


def test_seeded_study_at_concurrency_1_gives_the_same_trials_and_best(ray_cluster, stores):
    first, second = _run_twice(stores / "repro.yaml", SPACE.format(trials=10, concurrency=1, sampler_extra="",
                                                                  scheduler_extra="", epoch_seconds=0))
    _assert_same_study(first, second)


def test_deterministic_study_at_concurrency_2_gives_the_same_trials_and_best(ray_cluster, stores):
    # Trials sleep in proportion to their width, so they finish out of trial order.
    first, second = _run_twice(stores / "repro.yaml", SPACE.format(trials=10, concurrency=2,
                                                                  sampler_extra=", deterministic: true",
                                                                  scheduler_extra="", epoch_seconds=0.05))
    _assert_same_study(first, second)


def test_seeded_study_with_brackets_gives_the_same_trials_and_the_last_bracket_stops_none(ray_cluster, stores):
    """Three brackets on 9 epochs (judged at 1, 3 | 3 | never), dealt in turn: trial k is in bracket k mod 3."""
    first, second = _run_twice(stores / "repro.yaml", SPACE.format(trials=12, concurrency=1, sampler_extra="",
                                                                  scheduler_extra=", brackets: 3", epoch_seconds=0))
    _assert_same_study(first, second)
    _, trials = first
    assert all(state == "COMPLETE" and len(curve) == 9 for number, _, state, _, curve in trials if number % 3 == 2)
    assert any(state == "PRUNED" and len(curve) == 1 for number, _, state, _, curve in trials if number % 3 == 0)
    assert not any(len(curve) < 3 for number, _, _, _, curve in trials if number % 3 == 1)  # judged first at 3


def test_deterministic_study_with_a_rung_check_gives_the_same_trials_and_trains_its_checks_in_full(ray_cluster,
                                                                                                    stores):
    """A rung check in Tune's loop: trials 1, 4, 7 and 11 (numbers 0, 3, 6, 10) train all 9 epochs whatever their values,
    and, in deterministic mode, the checks read the same trials in both runs."""
    first, second = _run_twice(stores / "repro.yaml", SPACE.format(trials=12, concurrency=2,
                                                                  sampler_extra=", deterministic: true",
                                                                  scheduler_extra=", rung_check: true",
                                                                  epoch_seconds=0.02))
    _assert_same_study(first, second)
    _, trials = first
    assert all(state == "COMPLETE" and len(curve) == 9 for number, _, state, _, curve in trials
               if number in (0, 3, 6, 10))
