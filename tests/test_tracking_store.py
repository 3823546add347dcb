"""Opening a study's MLflow store on SQLite, as several processes on one machine do."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from support import REPO

pytestmark = pytest.mark.slow  # fresh interpreters importing MLflow: seconds

# Imports and warms up first, then waits for the moment given, so that the processes open the store within a
# few milliseconds of each other.
_OPEN_AT = """
import sys, time
from service._tracking import client_for, get_or_create_experiment
import mlflow.store.tracking.sqlalchemy_store
print("ready", flush=True)
start = float(sys.stdin.readline())
while time.time() < start:
    pass
get_or_create_experiment(client_for(sys.argv[1]), "shared")
"""


def test_processes_opening_a_new_sqlite_store_at_once_all_open_it(tmp_path):
    """Two `hpsearch submit` on a fresh home (or one and `hpsearch status`): MLflow creates and upgrades the
    tables of a new store without a lock of its own ("table runs already exists", "duplicate column name" in
    18 of 24 such processes before they took turns)."""
    answers = []
    for attempt in range(2):
        url = f"sqlite:///{tmp_path / f'mlflow-{attempt}.db'}"
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, url], cwd=REPO, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.communicate(timeout=60)[1][-3000:]
        start = time.time() + 0.5
        for p in procs:
            p.stdin.write(f"{start}\n")
            p.stdin.flush()
        for p in procs:
            err = p.communicate(timeout=180)[1]
            answers.append("ok" if p.returncode == 0 else err.strip().splitlines()[-1])

    assert answers == ["ok"] * 8


def test_a_store_in_memory_or_a_missing_folder_takes_no_lock(tmp_path):
    from service._tracking import _one_opener_at_a_time

    for uri in ("sqlite://", f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}", "http://127.0.0.1:5000"):
        with _one_opener_at_a_time(uri):
            pass
    assert list(tmp_path.iterdir()) == []
