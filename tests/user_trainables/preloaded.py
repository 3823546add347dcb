"""A user's own trainable that tells how its worker came to import it.

An embedded Ray's workers import a study's trainable module as they start, before a trial is handed to them
(service/_ray.py). The module notes at import whether it was imported inside a trial's actor (it was not
preloaded) or before any (it was), and the thread count its process had then (what torch would size its
pool by); each trial reports both, and whether MLflow's and Ray's usage reporting is off in its process.
"""

import os

import ray
from ray import tune

_ACTOR_AT_IMPORT = ray.get_runtime_context().get_actor_id() if ray.is_initialized() else "driver"
_THREADS_AT_IMPORT = os.environ.get("OMP_NUM_THREADS", "unset")


def train(config: dict) -> None:
    telemetry_off = float(os.environ.get("MLFLOW_DISABLE_TELEMETRY") == "true"
                          and os.environ.get("RAY_USAGE_STATS_ENABLED") == "0")
    tune.report({"score": config["x"], "epoch": 1, "preloaded": float(_ACTOR_AT_IMPORT is None),
                 "threads_at_import": float(_THREADS_AT_IMPORT) if _THREADS_AT_IMPORT.isdigit() else -1.0,
                 "telemetry_off": telemetry_off, "worker_pid": os.getpid()})
