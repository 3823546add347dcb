"""trainables.mlp / trainables.cnn under a real Ray Tune run: metrics and checkpoints arrive per epoch."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ray_cluster():
    """An embedded 2-CPU Ray for this module, unless one is already running (then it is left alone)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": REPO}})
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.parametrize("model_name, params", [("cnn", {"maps": 4}), ("mlp", {"units": 16})])
def test_tune_runs_the_trainable_and_persists_a_checkpoint_per_epoch(ray_cluster, tmp_path, model_name, params):
    from ray import tune

    from trainables.cnn import train as train_cnn
    from trainables.mlp import train as train_mlp

    tuner = tune.Tuner(
        tune.with_resources({"cnn": train_cnn, "mlp": train_mlp}[model_name], {"cpu": 1}),
        param_space={**params, "max_epochs": 2, "seed": tune.grid_search([0, 1]),
                     "data": {"dataset": "digits"}},
        tune_config=tune.TuneConfig(metric="val_acc", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="smoke", verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    for result in results:
        assert result.metrics["epoch"] == 2 and 0 < result.metrics["val_acc"] <= 1
        assert len(result.best_checkpoints) == 2  # one per epoch
        with result.checkpoint.as_directory() as checkpoint_dir:
            assert os.listdir(checkpoint_dir) == ["checkpoint.pt"]
