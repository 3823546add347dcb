"""The model `--register` puts in MLflow's Model Registry, and `best_model/`'s checkpoint, serve any batch
size: loaded back through `mlflow.pyfunc` and `mlflow.pytorch`, on the MLP and the CNN, with a real MLflow
store and real trained checkpoints."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from service._tracking import register_best_model
from trainables import fit, load_model

pytestmark = pytest.mark.slow  # trains two models for an epoch and exports them with torch.export


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _checkpoint(model_name: str, folder) -> str:
    """checkpoint.pt of a model trained for one epoch on digits, as a trial leaves it."""
    kept = {}

    def report(metrics: dict, checkpoint_dir: str) -> None:
        shutil.copytree(checkpoint_dir, folder, dirs_exist_ok=True)
        kept["dir"] = str(folder)

    fit(model_name, {"max_epochs": 1, "batch_size": 128}, report)
    return kept["dir"]


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_registered_model_serves_any_batch_size(tmp_path, tracking_uri, model_name):
    import torch

    checkpoint_dir = _checkpoint(model_name, tmp_path / "checkpoint")
    row_shape = tuple(torch.load(f"{checkpoint_dir}/checkpoint.pt", weights_only=True)["input_shape"])  # (1, 8, 8)
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(f"registered-{model_name}")
    parent = client.create_run(experiment).info.run_id

    registered = register_best_model(tracking_uri, parent, checkpoint_dir, f"digits-{model_name}")
    assert registered == f"digits-{model_name}/1"

    mlflow.set_tracking_uri(tracking_uri)
    uri = f"models:/digits-{model_name}/1"
    as_pyfunc = mlflow.pyfunc.load_model(uri)
    as_torch = mlflow.pytorch.load_model(uri)
    reference = load_model(f"{checkpoint_dir}/checkpoint.pt")  # what best_model/ holds
    for batch in (1, 17):
        x = np.random.default_rng(batch).standard_normal((batch, *row_shape)).astype(np.float32)
        expected = reference(torch.from_numpy(x)).detach().numpy()
        assert np.asarray(as_pyfunc.predict(x)).shape == (batch, 10)
        np.testing.assert_allclose(np.asarray(as_pyfunc.predict(x)), expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(as_torch(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-4, atol=1e-5)
