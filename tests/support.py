"""What several test files share: the API's token, a small space and an app on real stores whose Ray head is
down; a stand-in for Tune's Trial with the attributes the callbacks read; a `scripts/local-cluster` for a test
module, a real MLflow server, and the check that a study's three stores agree trial by trial."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from service._settings import resolve_settings
from service.api import ApiConfig, RayJobs, create_app

TOKEN = secrets.token_hex(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SPACE = """\
name: api-test
trainable: mlp
metric: val_acc
mode: max
budget: {trials: 2, max_epochs: 1}
params:
  lr: {type: float, low: 0.001, high: 0.1, log: true}
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(tmp_path: Path, backend_store_uri: str, env: Optional[dict] = None):
    """`mlflow server` on a free loopback port with one worker, healthy; yields its URL, ends it afterwards.
    What it prints goes to tmp_path/mlflow-server.log."""
    port = closed_port()
    log = open(tmp_path / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri, "--default-artifact-root",
         str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def api_app(tmp_path, registry_url: str):
    """The service on SQLite stores under `tmp_path` and `registry_url`, launching drivers through a Ray Jobs
    API nobody listens on (a Ray head that is down)."""
    settings = resolve_settings(home=str(tmp_path / "home"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}", registry_url=registry_url)
    jobs = RayJobs(address=f"http://127.0.0.1:{closed_port()}")
    return create_app(ApiConfig(token=TOKEN, settings=settings, jobs=jobs))


@dataclass
class FakeTrial:
    """The attributes of Tune's Trial that the callbacks read."""

    trial_id: str
    config: dict = field(default_factory=dict)
    last_result: dict = field(default_factory=dict)
    error_file: Optional[str] = None


# -- a local cluster ------------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"
USER_TRAINABLES = Path(__file__).parent / "user_trainables"
# The users' trainables the cluster's admin admits (HPSEARCH_TRAINABLE_MODULES).
TEST_TRAINABLE_MODULES = "where,slow,flaky,chaos"


def local_cluster(workers: int = 2):
    """`scripts/local-cluster up`, then {"env": its DIR/env.json over this environment, "info": cluster.json,
    "dir", "root", "script_env", "secrets": the three secrets of DIR}; `down` at the end, whatever happened. For a module-scoped fixture:
    `yield from local_cluster()`. Nothing of the caller's Ray, hpsearch or MLflow settings reaches it."""
    # Short: the Ray nodes' unix sockets live under it.
    root = Path(tempfile.mkdtemp(prefix="hpc-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSEARCH_", "MLFLOW_"))}
    # The users' trainables, importable on every node and the API, and this checkout's hpsearch (whatever
    # checkout the virtualenv's editable install points at).
    env["PYTHONPATH"] = os.pathsep.join([str(USER_TRAINABLES), str(REPO)])
    env["HPSEARCH_TRAINABLE_MODULES"] = TEST_TRAINABLE_MODULES  # and admitted by the cluster's admin
    up = subprocess.run([sys.executable, str(LOCAL_CLUSTER), "up", "--dir", str(root / "c"), "--workers",
                         str(workers)],
                        env=env, capture_output=True, text=True, timeout=480)  # MLflow alone may take 240 s
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-5000:]
        client_env = dict(env)
        client_env.update(json.loads((root / "c" / "env.json").read_text()))
        info = json.loads((root / "c" / "cluster.json").read_text())
        with pytest.MonkeyPatch.context() as patch:
            # MLflow asks for its login; the MlflowClient of this process reads it from the environment.
            for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                patch.setenv(name, client_env[name])
            yield {"env": client_env, "info": info, "dir": root / "c", "root": root, "script_env": env,
                   "secrets": [(root / "c" / name).read_text().strip()
                               for name in ("api_token", "ray_token", "mlflow_password") if (root / "c" / name).exists()]}
    finally:
        down = subprocess.run([sys.executable, str(LOCAL_CLUSTER), "down", "--dir", str(root / "c")],
                              env=env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, down.stderr[-3000:]


def cluster_script(cluster: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`scripts/local-cluster VERB ... --dir DIR` on the fixture's cluster, in the environment `up` had."""
    return subprocess.run([sys.executable, str(LOCAL_CLUSTER), *args, "--dir", str(cluster["dir"])],
                          env=cluster["script_env"], capture_output=True, text=True, timeout=timeout)


# -- the three stores agree -----------------------------------------------------------------------------------
# What each Optuna state of a finished study's trial must be in MLflow: (run status, hpsearch.state). A trial
# still RUNNING in Optuna belongs to a stopped or crashed study that `resume` continues: interrupted, KILLED.
MLFLOW_FOR_OPTUNA = {"COMPLETE": ("FINISHED", "completed"), "PRUNED": ("FINISHED", "pruned"),
                     "FAIL": ("FAILED", "failed"), "RUNNING": ("KILLED", "interrupted")}
PARENT_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "stopped": "KILLED", "crashed": "KILLED"}


def assert_records_agree(study_id: str, env: dict) -> dict:
    """A finished study's registry row, Optuna study and MLflow runs tell the same story, trial by trial:
    every Optuna trial has exactly one MLflow child run (and no run lacks a trial) whose status and
    `hpsearch.state` match its Optuna state, a failed one says why, the retries agree, and the registry's
    counts are Optuna's. Returns {"record", "trials" (Optuna, by number), "runs" (MLflow, by number)}."""
    import optuna
    from mlflow.tracking import MlflowClient

    from service._registry import Registry

    registry = Registry(env["HPSEARCH_REGISTRY_URL"])
    try:
        record = registry.find_by_id(study_id)
    finally:
        registry.dispose()
    assert record is not None, f"study {study_id} is not in the registry"
    assert record.status.finished, f"study {study_id} is still {record.status}"
    study = optuna.load_study(study_name=record.optuna_study_name, storage=env["HPSEARCH_OPTUNA_STORAGE"])
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(record.mlflow_parent_run_id)
    assert parent.info.status == PARENT_STATUS[record.status.value], (record.status, parent.info.status)
    assert parent.data.tags["hpsearch.status"] == record.status.value
    children = client.search_runs([record.mlflow_experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{record.mlflow_parent_run_id}'",
                                  max_results=5000)
    numbers = [int(r.data.tags["hpsearch.trial"]) for r in children]
    assert sorted(numbers) == sorted(trials), f"MLflow child runs {sorted(numbers)} != Optuna trials {sorted(trials)}"
    runs = {int(r.data.tags["hpsearch.trial"]): r for r in children}

    for number, trial in trials.items():
        run = runs[number]
        status, state = MLFLOW_FOR_OPTUNA[trial.state.name]
        assert (run.info.status, run.data.tags.get("hpsearch.state")) == (status, state), \
            f"trial {number}: Optuna {trial.state.name}, MLflow {run.info.status} {run.data.tags.get('hpsearch.state')}"
        assert run.info.end_time is not None, f"trial {number}: its MLflow run never ended"
        if trial.state.name == "FAIL":
            assert run.data.tags.get("hpsearch.fail_reason"), f"trial {number} failed without a reason in MLflow"
        retries = int(study.user_attrs.get(f"hpsearch.retries.{number}", 0))
        assert int(run.data.tags.get("hpsearch.retries", 0)) == retries, \
            f"trial {number}: {run.data.tags.get('hpsearch.retries', 0)} retries in MLflow, {retries} in Optuna"

    counts = {name: sum(t.state.name == name for t in trials.values()) for name in ("COMPLETE", "PRUNED", "FAIL")}
    assert (record.n_trials, record.n_completed, record.n_pruned, record.n_failed) == (
        len(trials), counts["COMPLETE"], counts["PRUNED"], counts["FAIL"]), record
    if record.status.value in ("succeeded", "failed"):
        assert record.n_running == 0 and not [t for t in trials.values() if t.state.name == "RUNNING"]
    assert record.retries == sum(int(study.user_attrs.get(f"hpsearch.retries.{n}", 0)) for n in trials), record
    return {"record": record, "trials": trials, "runs": runs}


def wait_for(predicate, timeout_s: float, what: str, every_s: float = 0.5):
    """Poll `predicate` every `every_s` until it returns something true, and return that; fail the test
    after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(every_s)


def run_together(code: str, args: list[str], processes: int, timeout_s: float = 180) -> list[subprocess.CompletedProcess]:
    """Run `processes` Python processes of `code` (with `args`), released at the same moment: `code` prints
    "ready" once it has imported and warmed up, then reads the moment (time.time()) to start at from stdin and
    waits for it, so that what follows runs in every process within a few milliseconds of the others."""
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    for p in procs:
        assert p.stdout.readline() == "ready\n", p.communicate(timeout=60)[1][-3000:]
    start = time.time() + 0.5
    for p in procs:
        p.stdin.write(f"{start}\n")
        p.stdin.flush()
    done = []
    for p in procs:
        out, err = p.communicate(timeout=timeout_s)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done
