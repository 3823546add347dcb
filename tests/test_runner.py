"""service/_runner.py: the parts of a study's run that are not a verb's end-to-end test."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.e2e


def test_connecting_ahead_leaves_the_study_modules_imported_and_mlflow_tables_made(tmp_path):
    """While an embedded Ray starts, a thread imports the study's modules and opens its MLflow store, which on
    a fresh SQLite file creates MLflow's tables: all done when connect_ahead returns (a fresh interpreter)."""
    db = tmp_path / "mlflow.db"
    code = (
        "import sys\n"
        "from service._runner import _STUDY_MODULES, connect_ahead\n"
        "before = [m for m in _STUDY_MODULES if m in sys.modules]\n"
        f"connect_ahead(None, None, 'sqlite:///{db}')\n"
        "import ray\n"
        "print(before, [m for m in _STUDY_MODULES if m not in sys.modules], ray.is_initialized())\n"
    )
    env = {"RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)

    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[] [] True"
    with sqlite3.connect(db) as conn:
        tables = {name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}
    assert {"experiments", "runs", "metrics", "alembic_version"} <= tables
