"""Where hpsearch keeps its state, and how each store is addressed.

The state directory (`HPSEARCH_HOME`, default `~/.hpsearch`) holds, on a laptop:

    registry.db   the study registry (SQLite)
    optuna.db     Optuna study storage (SQLite; `optuna.load_study` and optuna-dashboard read it as is)
    tune/<id>/    Ray Tune experiment storage: trial checkpoints and the state `resume` restores from
    logs/<id>.log the study's events, one line each (`hpsearch logs ID`)

MLflow is not under it: its default is MLflow's own (`sqlite:///mlflow.db` in the working directory), so a
plain `mlflow ui` started there shows the studies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


@dataclass(frozen=True)
class Settings:
    """Resolved locations of every store one study uses."""

    home: Path  # state directory
    tracking_uri: str  # MLflow tracking URI
    optuna_storage: str  # SQLAlchemy URL of Optuna's storage
    registry_url: str  # SQLAlchemy URL of the study registry

    @property
    def tune_dir(self) -> Path:
        return self.home / "tune"

    def log_path(self, study_id: str) -> Path:
        """The study's event log (`hpsearch logs`); on a cluster it lies on the storage all nodes share."""
        return self.home / "logs" / f"{study_id}.log"


def resolve_settings(
    home: Optional[str] = None,
    tracking_uri: Optional[str] = None,
    optuna_storage: Optional[str] = None,
    registry_url: Optional[str] = None,
) -> Settings:
    """Explicit arguments win, then HPSEARCH_* / MLFLOW_TRACKING_URI variables, then laptop defaults."""
    home_path = Path(home or os.environ.get("HPSEARCH_HOME") or Path.home() / ".hpsearch").expanduser()
    home_path = home_path.resolve()
    tracking = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    # A relative sqlite path would follow the Ray workers' working directory; pin it to ours.
    if tracking.startswith("sqlite:///") and not tracking.startswith("sqlite:////"):
        tracking = "sqlite:///" + str(Path(tracking[len("sqlite:///"):]).resolve())
    optuna_url = optuna_storage or os.environ.get("HPSEARCH_OPTUNA_STORAGE") or f"sqlite:///{home_path / 'optuna.db'}"
    registry = registry_url or os.environ.get("HPSEARCH_REGISTRY_URL") or f"sqlite:///{home_path / 'registry.db'}"
    return Settings(home=home_path, tracking_uri=tracking, optuna_storage=optuna_url, registry_url=registry)


def mask_url(url: Optional[str]) -> Optional[str]:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`; other strings unchanged. Store URLs
    are recorded, printed and returned by the API: never with their password."""
    if not url or "@" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        scheme, sep, rest = url.partition("://")
        userinfo, at, host = rest.rpartition("@")
        return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***{at}{host}" if ":" in userinfo else url
