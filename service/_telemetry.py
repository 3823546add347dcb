"""What hpsearch's processes tell the makers of the libraries they use: nothing, unless the user says otherwise.

MLflow 3 (its client and its server) sends usage records to MLflow's own endpoint from a thread of every
process that imports it, and fetches its settings for that from the network first; Ray reports usage
statistics of each cluster it starts. A study runs on the user's own machines, often a closed cluster, and
its drivers would otherwise talk to the internet, and spend CPU on it beside Tune's loop (the consumer thread
took about 4 % of a no-op study's driver time in a profile, benchmarks/README.md). Both are switched off through
the environment, which every process hpsearch starts inherits (a study's driver, the embedded Ray's processes,
trial workers); a user who sets either variable, or who said `ray enable-usage-stats` (Ray's config file),
keeps their choice. Processes that do not descend from `hpsearch` get the same through the Ray runtime env of
a study (`telemetry_env`: trial workers on a cluster's nodes) and through the cluster's scripts
(scripts/cluster/mlflow, ray-head and ray-worker, whose `ray start --disable-usage-stats` covers Ray's own).
"""

from __future__ import annotations

import json
import os

# The variable each library reads, and the value that turns its reporting off:
# https://mlflow.org/docs/latest/community/usage-tracking/ and
# https://docs.ray.io/en/latest/cluster/usage-stats.html
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}


def turn_off_library_telemetry() -> None:
    """Before MLflow or Ray is imported (MLflow decides when it is imported)."""
    for variable, value in TELEMETRY_OFF.items():
        if variable == "RAY_USAGE_STATS_ENABLED" and _ray_choice_on_file():
            continue  # Ray's variable outranks its file: setting it would overrule the user's own choice
        os.environ.setdefault(variable, value)


def telemetry_env() -> dict[str, str]:
    """This process's choices, for the processes a study starts elsewhere (a Ray runtime env's env_vars)."""
    return {variable: os.environ[variable] for variable in TELEMETRY_OFF if variable in os.environ}


def _ray_choice_on_file() -> bool:
    """Whether the user chose with `ray enable-usage-stats` / `ray disable-usage-stats`: Ray keeps that in the
    file named by RAY_USAGE_STATS_CONFIG_PATH, ~/.ray/config.json by default (its documented location)."""
    path = os.environ.get("RAY_USAGE_STATS_CONFIG_PATH") or os.path.expanduser("~/.ray/config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return isinstance(json.load(f).get("usage_stats"), bool)
    except (OSError, ValueError, AttributeError):
        return False
