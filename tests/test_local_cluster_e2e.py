"""The cluster of docker-compose.yml, started by `scripts/local-cluster` as processes on this machine, used
through the hpsearch API exactly as a user does: `hpsearch ... --server URL` with HPSEARCH_TOKEN.

The cluster: the MLflow server on PostgreSQL, a Ray head (no CPUs, so no trial runs there) and two worker
nodes declaring one logical GPU each, token authentication on, and the API service; the registry and the
Optuna storage in PostgreSQL. Every check reads the records back with the stock clients (Optuna, MLflow).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from support import local_cluster

pytestmark = pytest.mark.e2e

WHERE_SPACE = """
name: {name}
trainable: "where:train"
metric: score
mode: max
budget: {{trials: 4, max_epochs: 3, concurrency: 4}}
sampler: {{type: random, seed: {seed}}}
scheduler: {{type: fifo}}
resources: {{cpu: 1, gpu: 0.5}}
params:
  x: {{type: float, low: 0.0, high: 1.0}}
fixed: {{sleep: 1.5}}
"""

SLOW_SPACE = """
name: cluster-stop
trainable: "slow:train"
metric: score
mode: max
budget: {trials: 8, max_epochs: 5, concurrency: 2}
sampler: {type: random, seed: 1}
scheduler: {type: fifo}
resources: {cpu: 1, gpu: 0.5}
params:
  x: {type: float, low: 0.0, high: 1.0}
fixed: {sleep: 1.0}
"""


@pytest.fixture(scope="module")
def cluster():
    """`scripts/local-cluster up --workers 2`, then its DIR/env as a dict; `down` at the end, whatever happened."""
    yield from local_cluster(workers=2)


def _hpsearch(cluster, *args: str, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env={**cluster["env"], **env},
                          cwd=cluster["root"], capture_output=True, text=True, timeout=timeout)


def _status(cluster, study_id: str) -> dict:
    run = _hpsearch(cluster, "status", study_id, "--json", timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def _optuna(cluster, study_id: str):
    return optuna.load_study(study_name=study_id, storage=cluster["env"]["HPSEARCH_OPTUNA_STORAGE"])


def _trial_runs(cluster, summary: dict) -> list:
    client = MlflowClient(cluster["env"]["MLFLOW_TRACKING_URI"])
    return client.search_runs(
        [summary["mlflow_experiment_id"]],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary['mlflow_parent_run_id']}'",
    )


def _worker_node_ids(cluster) -> set:
    # The driver's view of the cluster, as a user's script on the head would have it.
    script = (
        "import json, ray; ray.init(log_to_driver=False, logging_level='ERROR'); "
        "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive'] and n['Resources'].get('GPU')]))"
    )
    run = subprocess.run([sys.executable, "-c", script], env=cluster["env"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return set(json.loads(run.stdout.strip().splitlines()[-1]))


def test_two_studies_at_once_spread_over_both_workers_and_every_store_agrees(cluster, tmp_path):
    spaces = []
    for i in (1, 2):
        path = tmp_path / f"where{i}.yaml"
        path.write_text(WHERE_SPACE.format(name=f"cluster-where-{i}", seed=i))
        spaces.append(path)

    # Two users submit at the same time, each following their study to the end.
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda p: _hpsearch(cluster, "submit", str(p), "--wait", "--json", timeout=400), spaces))

    summaries = []
    for run in runs:
        assert run.returncode == 0, run.stderr[-4000:]
        summary = json.loads(run.stdout)
        assert summary["status"] == "succeeded" and summary["n_completed"] == 4, summary
        assert "trial 0000 started" in run.stderr  # --wait followed the study's log
        summaries.append(summary)
    assert summaries[0]["study_id"] != summaries[1]["study_id"]

    workers = _worker_node_ids(cluster)
    assert len(workers) == 2
    nodes_used = set()
    for summary in summaries:
        study_id = summary["study_id"]
        status = _status(cluster, study_id)
        registry_states = {t["number"]: t["state"] for t in status["trials"]}
        optuna_states = {t.number: t.state for t in _optuna(cluster, study_id).get_trials()}
        runs = _trial_runs(cluster, summary)
        mlflow_states = {int(r.data.tags["hpsearch.trial"]): r.data.tags["hpsearch.state"] for r in runs}
        # Registry (through the API), Optuna and MLflow agree on every trial.
        assert set(optuna_states.values()) == {TrialState.COMPLETE}
        assert registry_states == mlflow_states == {n: "completed" for n in optuna_states}
        assert (status["status"], status["n_completed"], status["ray_job_id"] is not None) == ("succeeded", 4, True)
        assert "s3cret" not in json.dumps(status) and "api_token" not in json.dumps(status)
        for r in runs:
            assert r.info.status == "FINISHED"
            assert r.data.tags["hpsearch.node"] in workers  # never the head: it has no CPUs
            assert r.data.tags["hpsearch.gpu_ids"] == "0"  # each worker's one logical GPU
        nodes_used |= {r.data.tags["hpsearch.node"] for r in runs}

    # Trials of both studies ran on both workers, and two trials of gpu: 0.5 shared one GPU at the same time.
    assert nodes_used == workers
    all_runs = [r for s in summaries for r in _trial_runs(cluster, s)]
    shared = False
    for node in workers:
        spans = sorted((r.data.metrics["started_at"], r.data.metrics["ended_at"]) for r in all_runs
                       if r.data.tags["hpsearch.node"] == node)
        shared |= any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
    assert shared, "no two trials overlapped on one worker's GPU"

    # The other verbs, against the server.
    listed = _hpsearch(cluster, "list", "--json", timeout=60)
    assert {s["study_id"] for s in summaries} <= {s["id"] for s in json.loads(listed.stdout)["studies"]}
    best_file = tmp_path / "best.yaml"
    best = _hpsearch(cluster, "best", summaries[0]["study_id"], "-o", str(best_file), timeout=60)
    assert best.returncode == 0, best.stderr[-2000:]
    assert yaml.safe_load(best_file.read_text())["fixed"] == {"sleep": 1.5, "x": summaries[0]["best_params"]["x"]}
    logs = _hpsearch(cluster, "logs", summaries[0]["study_id"], timeout=60)
    assert f"study {summaries[0]['study_id']} succeeded" in logs.stdout


def test_a_driver_on_this_machine_joins_the_cluster_by_its_ray_address(cluster, tmp_path):
    """Without the API: `hpsearch submit --ray-address 127.0.0.1:PORT` in a shell that has not sourced DIR/env
    (so without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER) joins the cluster, whose nodes listen on loopback only
    (service/_ray.py: head_on_loopback_only), and its trials run on the worker nodes."""
    space = tmp_path / "direct.yaml"
    space.write_text(WHERE_SPACE.format(name="cluster-direct", seed=5))
    env = {k: v for k, v in cluster["env"].items()
           if k not in ("HPSEARCH_SERVER", "HPSEARCH_TOKEN", "RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    run = subprocess.run([sys.executable, "-m", "service.cli", "submit", str(space), "--quiet", "--json",
                          "--ray-address", cluster["info"]["urls"]["ray_address"]],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert (summary["status"], summary["n_completed"]) == ("succeeded", 4), summary
    assert {r.data.tags["hpsearch.node"] for r in _trial_runs(cluster, summary)} <= _worker_node_ids(cluster)


def test_stop_and_resume_through_the_server_lose_nothing(cluster, tmp_path):
    space = tmp_path / "slow.yaml"
    space.write_text(SLOW_SPACE)
    submitted = _hpsearch(cluster, "submit", str(space), timeout=60)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    study_id = submitted.stdout.strip()

    deadline = time.time() + 240
    while sum(t["state"] == "completed" for t in _status(cluster, study_id)["trials"]) < 2:
        assert time.time() < deadline, _status(cluster, study_id)
        time.sleep(1)
    time.sleep(2.5)  # past the 1 s experiment-state snapshot period

    stopped = _hpsearch(cluster, "stop", study_id, timeout=200)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert stopped.stdout.strip() == f"study {study_id}: stopped"
    status = _status(cluster, study_id)
    assert status["status"] == "stopped" and "hpsearch resume" in status["error"]
    finished_before = {t["number"] for t in status["trials"] if t["state"] == "completed"}
    assert 2 <= len(finished_before) < 8  # stopped midway
    runs_before = {int(r.data.tags["hpsearch.trial"]): r.info.run_id for r in _trial_runs(cluster, status["summary"])}

    resumed = _hpsearch(cluster, "resume", study_id, "--wait", "--json", timeout=400)

    assert resumed.returncode == 0, resumed.stderr[-4000:]
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "succeeded" and summary["n_completed"] >= 8
    study = _optuna(cluster, study_id)
    assert study.get_trials(states=(TrialState.RUNNING,)) == []
    client = MlflowClient(cluster["env"]["MLFLOW_TRACKING_URI"])
    runs_after = {int(r.data.tags["hpsearch.trial"]): r for r in _trial_runs(cluster, summary)}
    for number in finished_before:
        # Not run again: the same MLflow run, one value per epoch.
        assert runs_after[number].info.run_id == runs_before[number]
        steps = [m.step for m in client.get_metric_history(runs_before[number], "score")]
        assert steps == [1, 2, 3, 4, 5]
    log = _hpsearch(cluster, "logs", study_id, timeout=60).stdout
    assert "stop requested" in log and f"study {study_id} resumed" in log and f"study {study_id} succeeded" in log


def test_wrong_token_and_unreachable_server_are_one_line_errors(cluster, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text(WHERE_SPACE.format(name="never-run", seed=3))
    wrong = _hpsearch(cluster, "submit", str(space), timeout=60, HPSEARCH_TOKEN=secrets.token_hex(32))
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines() == [
        f"Error: the hpsearch server at {cluster['env']['HPSEARCH_SERVER'].rstrip('/')} refused the token; set "
        f"HPSEARCH_TOKEN to the token the service was started with"
    ]
    down = _hpsearch(cluster, "list", timeout=60, HPSEARCH_SERVER="http://127.0.0.1:9")
    assert down.returncode == 2 and len(down.stderr.strip().splitlines()) == 1
    assert "cannot reach the hpsearch server at http://127.0.0.1:9 (Connection refused)" in down.stderr
