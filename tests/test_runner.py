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


def test_a_cluster_driver_refuses_a_function_an_admitted_module_only_imported(tmp_path, monkeypatch):
    """`hpsearch run --study ID` on a cluster (HPSEARCH_TRAINABLE_MODULES set) fails the study, with the reason
    on its registry row, when its trainable names a function the admitted module merely imported (os.system
    here), before Ray or the trainable runs; the name alone passed the API's check."""
    from service._errors import StudyError
    from service._registry import Registry
    from service._runner import record_study, run_registered_study
    from service._settings import resolve_settings
    from service.space import load_space

    (tmp_path / "hps_borrow.py").write_text("from os import system\ndef train(config):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    space_file = tmp_path / "space.yaml"
    space_file.write_text((REPO / "search_spaces" / "synthetic_curves.yaml").read_text()
                          .replace("trainable: synthetic", 'trainable: "hps_borrow:system"'))
    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path / "home"))
    settings = resolve_settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry = Registry(settings.registry_url)
    try:
        record = record_study(registry, load_space(str(space_file)), settings, source=str(space_file))
        monkeypatch.setenv("HPSEARCH_TRAINABLE_MODULES", "hps_borrow")
        with pytest.raises(StudyError, match="comes from 'posix'"):
            run_registered_study(record.id, settings, show_progress=False)
        failed = registry.find_by_id(record.id)
        assert failed.status.value == "failed" and "hps_borrow:system" in failed.error
    finally:
        registry.dispose()
        sys.modules.pop("hps_borrow", None)
