"""hpsearch's processes send no usage data to the makers of MLflow and Ray unless the user says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

pytestmark = pytest.mark.slow  # fresh interpreters importing MLflow and Ray: seconds

# What the libraries read in a fresh process: MLflow's switch (MLflow is also quiet by itself under pytest or in
# CI, so its switch is read, not its client) and Ray's verdict (from its variable, then its config file).
_PROBE = """
import sys
if sys.argv[1] == "hpsearch":
    from service._telemetry import turn_off_library_telemetry
    turn_off_library_telemetry()
from mlflow.environment_variables import MLFLOW_DISABLE_TELEMETRY
from ray._common.usage.usage_lib import usage_stats_enabled
print(MLFLOW_DISABLE_TELEMETRY.get(), usage_stats_enabled())
"""
_SWITCHES = ("MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED")


def _probe(who: str, ray_config: Path, **env: str) -> str:
    """The probe's line, with neither switch set unless `env` sets it and Ray's config file at `ray_config`
    (the user's own ~/.ray/config.json must not decide the outcome)."""
    clean = {k: v for k, v in os.environ.items() if k not in _SWITCHES}
    clean["RAY_USAGE_STATS_CONFIG_PATH"] = str(ray_config)
    out = subprocess.run([sys.executable, "-c", _PROBE, who], cwd=REPO, env={**clean, **env},
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_mlflow_and_ray_would_report_usage_from_a_plain_process(tmp_path):
    """The control: both libraries are on by default."""
    assert _probe("plain", tmp_path / "none.json") == "False True"


def test_hpsearch_turns_both_off(tmp_path):
    assert _probe("hpsearch", tmp_path / "none.json") == "True False"


def test_a_users_own_choice_stands(tmp_path):
    assert _probe("hpsearch", tmp_path / "none.json", MLFLOW_DISABLE_TELEMETRY="false",
                  RAY_USAGE_STATS_ENABLED="1") == "False True"


def test_a_users_ray_enable_usage_stats_stands(tmp_path):
    """`ray enable-usage-stats` writes Ray's config file; Ray's variable would outrank it, so hpsearch leaves
    the variable alone (MLflow's switch is still set)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"usage_stats": True}))
    assert _probe("hpsearch", config) == "True True"


def test_the_executable_turns_them_off():
    """`entry` is what `hpsearch` runs: the variables are set in its environment, which its children inherit,
    before MLflow or Ray is imported."""
    entry = ("import os, sys; sys.argv = ['hpsearch', '--help']; from service import cli\n"
             "before = sorted(m for m in ('mlflow', 'ray') if m in sys.modules)\n"
             "import atexit; atexit.register(lambda: print(before, os.environ.get('MLFLOW_DISABLE_TELEMETRY'), "
             "os.environ.get('RAY_USAGE_STATS_ENABLED'), file=sys.stderr))\ncli.entry()\n")
    clean = {k: v for k, v in os.environ.items() if k not in _SWITCHES}
    clean["RAY_USAGE_STATS_CONFIG_PATH"] = "/nonexistent/config.json"
    out = subprocess.run([sys.executable, "-c", entry], cwd=REPO, env=clean, capture_output=True, text=True,
                         timeout=120)

    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == "[] true 0"


def test_study_drivers_on_a_cluster_pass_the_choice_to_their_workers(monkeypatch, tmp_path):
    """The API launches drivers as Ray jobs; the job's runtime env reaches trial workers on every node."""
    from service._serve import api_config
    from service._settings import resolve_settings

    monkeypatch.setenv("HPSEARCH_TOKEN", "t" * 32)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    config = api_config("http://ray-head:8265", resolve_settings(home=str(tmp_path)))
    assert config.jobs.driver_env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert config.jobs.driver_env["RAY_USAGE_STATS_ENABLED"] == "0"
