"""What several test files share: the API's token, a small space and an app on real stores whose Ray head is
down; a stand-in for Tune's Trial with the attributes the callbacks read."""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field
from typing import Optional

from service._settings import resolve_settings
from service.api import ApiConfig, RayJobs, create_app

TOKEN = secrets.token_hex(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SPACE = """\
name: api-test
trainable: mlp
metric: val_acc
mode: max
budget: {trials: 2, max_epochs: 1}
params:
  lr: {type: float, low: 0.001, high: 0.1, log: true}
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_app(tmp_path, registry_url: str):
    """The service on SQLite stores under `tmp_path` and `registry_url`, launching drivers through a Ray Jobs
    API nobody listens on (a Ray head that is down)."""
    settings = resolve_settings(home=str(tmp_path / "home"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}", registry_url=registry_url)
    jobs = RayJobs(address=f"http://127.0.0.1:{closed_port()}")
    return create_app(ApiConfig(token=TOKEN, settings=settings, jobs=jobs))


@dataclass
class FakeTrial:
    """The attributes of Tune's Trial that the callbacks read."""

    trial_id: str
    config: dict = field(default_factory=dict)
    last_result: dict = field(default_factory=dict)
    error_file: Optional[str] = None
