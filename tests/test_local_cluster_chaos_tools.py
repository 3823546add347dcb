"""`scripts/local-cluster`'s fault verbs on a real one-worker cluster: `kill-worker` ends one node and nothing
else, `restart worker-N` brings it back as a new Ray node, `add-worker` grows the cluster, `restart mlflow|api`
keep their addresses, and `status`/`down` see every process the verbs started (the fixture's `down` must pass).
The chaos tests (tests/test_chaos_e2e.py) use the same verbs while studies run."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from support import cluster_script, local_cluster, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster():
    yield from local_cluster(workers=1)


def _state(cluster) -> dict:
    return json.loads((cluster["dir"] / "cluster.json").read_text())


def _alive(pgid: int) -> bool:
    """Whether process group `pgid` has a live (not zombie) member."""
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split() if stat else []
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _worker_nodes(cluster) -> int:
    """Alive Ray nodes with a GPU, from the head's dashboard (with the cluster's token)."""
    token = (cluster["dir"] / "ray_token").read_text().strip()
    url = f"{cluster['env']['HPSEARCH_RAY_DASHBOARD']}/api/v0/nodes?limit=100&detail=1"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        nodes = json.load(response)["data"]["result"]["result"]
    return sum(n["state"] == "ALIVE" and n["resources_total"].get("GPU", 0) > 0 for n in nodes)


def test_kill_restart_and_add_workers_touch_only_the_node_named(cluster):
    before = _state(cluster)["processes"]
    others = {name: p["pgid"] for name, p in before.items() if name != "ray-worker-1"}

    killed = cluster_script(cluster, "kill-worker", "1", "--raylet")
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.startswith("sent SIGKILL to the raylet of worker 1 ("), killed.stdout
    # Without its raylet the node ends; every other part of the cluster lives on.
    wait_for(lambda: not _alive(before["ray-worker-1"]["pgid"]), 30, "worker 1's processes to end")
    assert all(_alive(pgid) for pgid in others.values())
    status = cluster_script(cluster, "status")
    assert status.returncode == 1 and "stopped" in next(line for line in status.stdout.splitlines()
                                                       if "ray-worker-1" in line), status.stdout

    restarted = cluster_script(cluster, "restart", "worker-1")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert restarted.stdout.startswith("restarted worker-1 (pgid ") and "healthy" in restarted.stdout
    after = _state(cluster)["processes"]["ray-worker-1"]
    assert after["pgid"] != before["ray-worker-1"]["pgid"] and after["generation"] == 1
    assert after["check_env"] != before["ray-worker-1"]["check_env"]  # a new node, on fresh ports

    added = cluster_script(cluster, "add-worker")
    assert added.returncode == 0, added.stderr[-3000:]
    assert added.stdout.startswith("added worker-2 (pgid ")
    state = _state(cluster)
    assert state["workers"] == 2 and state["processes"]["ray-worker-2"]["env"]["HPSEARCH_RAY_NUM_GPUS"] == "1"
    wait_for(lambda: _worker_nodes(cluster) == 2, 60, "two worker nodes alive in Ray")
    assert cluster_script(cluster, "status").returncode == 0

    # The whole node at once (the default): every process of worker 2, nothing of worker 1.
    whole = cluster_script(cluster, "kill-worker", "2")
    assert whole.returncode == 0 and whole.stdout.startswith("sent SIGKILL to "), whole.stderr
    wait_for(lambda: not _alive(state["processes"]["ray-worker-2"]["pgid"]), 10, "worker 2 to end")
    assert _alive(state["processes"]["ray-worker-1"]["pgid"])
    again = cluster_script(cluster, "kill-worker", "2")
    assert again.returncode == 1 and "restart worker-2" in again.stderr
    assert cluster_script(cluster, "restart", "worker-2").returncode == 0


def test_restarted_mlflow_and_api_answer_at_the_same_address(cluster):
    before = _state(cluster)["processes"]
    for role in ("mlflow", "api"):
        run = cluster_script(cluster, "restart", role)
        assert run.returncode == 0, run.stderr[-3000:]
        assert _state(cluster)["processes"][role]["pgid"] != before[role]["pgid"]
    assert not _alive(before["mlflow"]["pgid"]) and not _alive(before["api"]["pgid"])
    # The clients' settings (DIR/env) still hold: the same URLs, the same API token.
    listed = subprocess.run([sys.executable, "-m", "service.cli", "list", "--json"], env=cluster["env"],
                            cwd=cluster["root"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert json.loads(listed.stdout) == {"studies": []}
    with urllib.request.urlopen(f"{cluster['env']['MLFLOW_TRACKING_URI']}/health", timeout=10) as response:
        assert response.status == 200
    # The restarted MLflow still takes the service account's login (its password read back from DIR) ...
    assert MlflowClient(cluster["env"]["MLFLOW_TRACKING_URI"]).search_experiments()
    # ... and what the restarts wrote is as private as what `up` wrote.
    for path in [cluster["dir"] / "cluster.json", *(cluster["dir"] / "logs").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_unknown_roles_and_workers_are_usage_errors(cluster):
    role = cluster_script(cluster, "restart", "gpu-box")
    assert role.returncode == 2
    assert role.stderr.strip() == ("local-cluster: ROLE is 'gpu-box', but this cluster has mlflow, head, "
                                   "worker-1, api, worker-2")
    worker = cluster_script(cluster, "kill-worker", "7")
    assert worker.returncode == 2 and "N is 7, but this cluster's workers are worker-1, worker-2" in worker.stderr
