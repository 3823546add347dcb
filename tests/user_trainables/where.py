"""A user's own trainable (no torch) that takes a while per epoch, so that trials overlap in time.

It reports when it started and when each epoch ended (seconds since the epoch, as metrics), so a test can
tell which trials ran at the same time, whether MLflow's and Ray's usage reporting is off in its process
(1.0), and the process's id (`worker_pid`; Tune's own `pid` is not logged). Where they ran (node, GPU ids)
it does not report: the runner adds that to every trial's results.
"""

import os
import time

from ray import tune


def train(config: dict) -> None:
    started_at = time.time()
    telemetry_off = float(os.environ.get("MLFLOW_DISABLE_TELEMETRY") == "true"
                          and os.environ.get("RAY_USAGE_STATS_ENABLED") == "0")
    for epoch in range(1, config["max_epochs"] + 1):
        time.sleep(config.get("sleep", 0.5))
        tune.report({"score": config["x"] * epoch, "epoch": epoch, "started_at": started_at, "ended_at": time.time(),
                     "telemetry_off": telemetry_off, "worker_pid": os.getpid()})
