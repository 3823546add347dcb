"""Attacks on hpsearch, run for real, and the refusals docs/security.md promises.

The cluster attacks run against `scripts/local-cluster` as a token holder would (the API over HTTP); the
embedded-Ray and file checks run a real study on this machine."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent

TINY = """\
name: private-state
trainable: mlp
metric: val_acc
budget: {trials: 1, max_epochs: 1, concurrency: 1}
params: {}
"""


def test_security_state_is_private(tmp_path):
    """Everything a local study writes under HPSEARCH_HOME (registry, Optuna storage, log, checkpoints) and its
    MLflow store are the user's alone: folders 0700, files 0600."""
    space = tmp_path / "space.yaml"
    space.write_text(TINY)
    env = dict(os.environ, HPSEARCH_HOME=str(tmp_path / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    done = subprocess.run([sys.executable, "-m", "service.cli", "submit", str(space), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    paths = [tmp_path / "home", *(tmp_path / "home").rglob("*"), tmp_path / "mlflow.db"]
    assert any(p.name.endswith(".log") for p in paths) and any(p.name == "checkpoint.pt" for p in paths)
    loose = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in paths
             if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert loose == []


def test_security_embedded_ray_refuses_calls_without_its_token(tmp_path):
    """An embedded Ray's servers listen beyond loopback (Ray 2.60 cannot be confined to it, see
    docs/security.md), so they must refuse a client that lacks the instance's token, or has a wrong one."""
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, num_cpus=1)
    try:
        gcs = ray.get_runtime_context().gcs_address
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
        join = f"import ray; ray.init(address={gcs!r}); print('JOINED')"
        for extra in ({"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "x" * 32}):
            attempt = subprocess.run([sys.executable, "-c", join], env={**env, **extra}, capture_output=True,
                                     text=True, timeout=180)
            assert attempt.returncode != 0 and "JOINED" not in attempt.stdout, (extra, attempt.stdout[-500:])
    finally:
        ray.shutdown()
