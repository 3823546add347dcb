"""What hpsearch's processes tell the makers of the libraries they use: nothing, unless the user says otherwise.

MLflow 3 (its client and its server) sends usage records to MLflow's own endpoint from a thread of every
process that imports it, and fetches its settings for that from the network first; Ray reports usage
statistics of each cluster it starts. A study runs on the user's own machines, often a closed cluster, and
its drivers would otherwise talk to the internet, and spend CPU on it beside Tune's loop (the consumer thread
took about 4 % of a no-op study's driver time in a profile, benchmarks/README.md). Both are switched off through
the environment, which every process hpsearch starts inherits (a study's driver, the embedded Ray's processes,
trial workers); a user who sets either variable keeps their choice. The cluster's images and scripts set the
same for the processes they start themselves (scripts/cluster/mlflow, `ray start --disable-usage-stats`).
"""

from __future__ import annotations

import os

# The variable each library reads, and the value that turns its reporting off:
# https://mlflow.org/docs/latest/community/usage-tracking/ and
# https://docs.ray.io/en/latest/cluster/usage-stats.html
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}


def turn_off_library_telemetry() -> None:
    """Before MLflow or Ray is imported (MLflow decides when it is imported)."""
    for variable, value in TELEMETRY_OFF.items():
        os.environ.setdefault(variable, value)
