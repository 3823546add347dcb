"""hpsearch's processes send no usage data to the makers of MLflow and Ray unless the user says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support import REPO

pytestmark = pytest.mark.slow  # fresh interpreters importing MLflow and Ray: seconds

# What MLflow and Ray decide in a process: MLflow's telemetry client (None when off), Ray's usage stats.
_PROBE = """
import sys
if sys.argv[1] == "hpsearch":
    from service._telemetry import turn_off_library_telemetry
    turn_off_library_telemetry()
import mlflow
from mlflow.telemetry import get_telemetry_client
from ray._common.usage.usage_lib import usage_stats_enabled
print(get_telemetry_client() is not None, usage_stats_enabled())
"""


def _probe(who: str, **env: str) -> str:
    # Without the variables that make MLflow think it runs in CI or under pytest (it stays quiet there anyway).
    quiet = {"PYTEST_CURRENT_TEST", "CI", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "RAY_USAGE_STATS_ENABLED"}
    clean = {k: v for k, v in os.environ.items() if k not in quiet}
    out = subprocess.run([sys.executable, "-c", _PROBE, who], cwd=REPO, env={**clean, **env},
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_mlflow_and_ray_would_report_usage_from_a_plain_process():
    """The control: what the libraries do by default on this machine."""
    assert _probe("plain") == "True True"


def test_hpsearch_turns_both_off():
    assert _probe("hpsearch") == "False False"


def test_a_users_own_choice_stands():
    assert _probe("hpsearch", MLFLOW_DISABLE_TELEMETRY="false", RAY_USAGE_STATS_ENABLED="1") == "True True"


def test_the_executable_turns_them_off():
    """`entry` is what `hpsearch` runs: the variables are set in its environment, which its children inherit."""
    entry = ("import os, sys; sys.argv = ['hpsearch', '--help']; from service import cli\n"
             "import atexit; atexit.register(lambda: print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'), "
             "os.environ.get('RAY_USAGE_STATS_ENABLED'), file=sys.stderr))\ncli.entry()\n")
    clean = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED"}}
    out = subprocess.run([sys.executable, "-c", entry], cwd=REPO, env=clean, capture_output=True, text=True,
                         timeout=120)

    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == "true 0"
