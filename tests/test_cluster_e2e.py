"""`hpsearch submit --ray-address` on a real multi-node Ray cluster on this machine.

The cluster is what `ray start` makes: a head (no CPUs, so no trial lands there) and two worker nodes that
declare one logical GPU each, with token authentication on and a token made for this module. The command
runs in its own process, as a user runs it, and the results are read back with the stock Optuna and MLflow
clients. The Ray processes are ended by process group, never with `ray stop` (which ends every Ray on the
machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from service.cli import main

pytestmark = pytest.mark.e2e

USER_TRAINABLES = Path(__file__).parent / "user_trainables"
RAY = Path(sys.executable).with_name("ray")

# Waits for the three nodes, then prints them; the fixture learns the worker nodes' ids from it.
LIST_NODES = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
deadline = time.time() + 60
while time.time() < deadline:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) == 3 and sum(n["Resources"].get("GPU", 0) for n in nodes) == 2:
        break
    time.sleep(0.5)
print(json.dumps([{"id": n["NodeID"], "gpus": n["Resources"].get("GPU", 0)} for n in nodes]))
"""


@dataclass
class RayCluster:
    address: str  # the head's GCS, HOST:PORT
    token: str
    worker_node_ids: set
    home: Path  # HOME for drivers: holds no ~/.ray/auth_token, so the token comes only from what a test passes

    def driver_env(self, tmp_path: Path, **auth: str) -> dict:
        """The environment of a user's shell on a machine that is not the head: no Ray settings but `auth`."""
        env = _without_ray_settings(os.environ)
        env.update(
            HOME=str(self.home),
            HPSEARCH_HOME=str(tmp_path / "home"),
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
            PYTHONPATH=str(USER_TRAINABLES),  # the driver imports the user's trainable; Ray passes it to workers
            **auth,
        )
        return env


def _without_ray_settings(environ) -> dict:
    """The environment without RAY_* variables (RAY_ADDRESS, RAY_AUTH_*, and those an in-process `ray.init`
    of another test module leaves behind), so each process here gets exactly the Ray settings it is given, and
    without MLflow's telemetry switch: nodes that `ray start` made are not hpsearch's to configure."""
    return {k: v for k, v in environ.items() if not k.startswith("RAY_") and k != "MLFLOW_DISABLE_TELEMETRY"}


def _free_ports(n: int) -> list[int]:
    """n distinct ports nobody listens on now (all held open while picking, so none repeats)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _node_ports() -> list[str]:
    """Every port a node opens, chosen here: Ray's defaults (e.g. the agent's 52365) are shared by all nodes
    of one machine and by any other Ray running on it."""
    names = ("--node-manager-port", "--object-manager-port", "--metrics-export-port", "--runtime-env-agent-port",
             "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port")
    return [arg for name, port in zip(names, _free_ports(len(names))) for arg in (name, str(port))]


def _stop(processes: list[subprocess.Popen], root: Path) -> None:
    """End the `ray start --block` process groups, then anything else still running under `root`."""
    for proc in processes:
        _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.time() + 3  # a graceful stop usually takes a second; then no more waiting
    for proc in processes:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
    for proc in processes:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    for pid in _pids_mentioning(str(root)):  # e.g. a worker that left the group; ours by its --temp-dir
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _pids_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def ray_cluster():
    # Short paths: Ray's unix sockets live under the temp dir and a socket path has at most 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="hps-", dir="/tmp"))
    home = root / "home"
    home.mkdir()
    token = secrets.token_hex(32)
    token_file = root / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = _without_ray_settings(os.environ)
    env.pop("PYTHONPATH", None)  # the workers find the user's trainable only through the driver's runtime env
    # Token authentication on every node, from a file (never on a command line, where `ps` shows it).
    env.update(HOME=str(home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    gcs_port, client_port, dashboard_port = _free_ports(3)
    common = ["--block", "--disable-usage-stats", "--object-store-memory", str(100 * 1024**2)]
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        log = open(root / f"{name}.log", "w")
        processes.append(subprocess.Popen(
            [str(RAY), "start", *args, *_node_ports(), *common], env=env, cwd=root,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # one process group per node
        ))
        log.close()

    try:
        start("head", "--head", "--port", str(gcs_port), "--num-cpus", "0", "--include-dashboard=false",
              "--ray-client-server-port", str(client_port), "--dashboard-port", str(dashboard_port),
              "--temp-dir", str(root / "head"))
        address = f"127.0.0.1:{gcs_port}"
        _wait_for_port(gcs_port, timeout=30)
        # Two logical CPUs per worker node: room for two trials of {cpu: 1, gpu: 0.5} on its one GPU.
        # Each node has its own temp dir: nodes started at once in one dir race for the same socket names.
        for i in (1, 2):
            start(f"worker{i}", "--address", address, "--num-cpus", "2", "--num-gpus", "1",
                  "--temp-dir", str(root / f"worker{i}"))
        listed = subprocess.run(
            [sys.executable, "-c", LIST_NODES, address], env=env, cwd=root,
            capture_output=True, text=True, timeout=90,
        )
        assert listed.returncode == 0, _logs(root) + listed.stderr[-2000:]
        nodes = json.loads(listed.stdout.strip().splitlines()[-1])
        workers = {n["id"] for n in nodes if n["gpus"] == 1}
        assert len(nodes) == 3 and len(workers) == 2, (nodes, _logs(root))
        yield RayCluster(address=address, token=token, worker_node_ids=workers, home=home)
    finally:
        _stop(processes, root)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the head's GCS did not open port {port} within {timeout}s")


def _logs(root: Path) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(root.glob("*.log")))


def _hpsearch(env: dict, cwd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )


WHERE_SPACE = """
name: cluster-e2e
trainable: "where:train"
metric: score
mode: max
budget: {trials: 4, max_epochs: 3, concurrency: 4}
sampler: {type: random, seed: 5}
scheduler: {type: fifo}
resources: {cpu: 1, gpu: 0.5}
params:
  x: {type: float, low: 0.0, high: 1.0}
fixed: {sleep: 1.5}
"""


def test_submit_to_cluster_runs_trials_on_both_workers_sharing_their_gpus(ray_cluster, tmp_path):
    space = tmp_path / "where.yaml"
    space.write_text(WHERE_SPACE)
    env = ray_cluster.driver_env(tmp_path, RAY_AUTH_TOKEN=ray_cluster.token)  # no RAY_AUTH_MODE: hpsearch presents it

    run = _hpsearch(env, tmp_path, "submit", str(space), "--ray-address", ray_cluster.address, "--json", "--quiet",
                    timeout=120)

    assert run.returncode == 0, run.stderr[-3000:]
    assert ray_cluster.token not in run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert summary["status"] == "succeeded" and summary["n_completed"] == 4

    # Optuna and MLflow agree on every trial.
    trials = optuna.load_study(study_name=summary["optuna_study_name"], storage=summary["optuna_storage"]).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    client = MlflowClient(summary["mlflow_tracking_uri"])
    runs = client.search_runs(
        [summary["mlflow_experiment_id"]],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary['mlflow_parent_run_id']}'",
    )
    by_number = {int(r.data.tags["hpsearch.trial"]): r for r in runs}
    assert sorted(by_number) == [t.number for t in trials]
    for t in trials:
        assert by_number[t.number].data.tags["hpsearch.state"] == "completed"
        assert by_number[t.number].info.status == "FINISHED"
        assert by_number[t.number].data.metrics["score"] == pytest.approx(t.value)

    # Every trial ran on a worker node (the head has no CPUs), and both workers ran trials.
    tags = [r.data.tags for r in runs]
    assert {tag["hpsearch.node"] for tag in tags} == ray_cluster.worker_node_ids
    assert all(tag["hpsearch.node_ip"] for tag in tags)
    # The driver's choice reached its trial workers on the other nodes (the runtime env): no usage reporting.
    assert all(r.data.metrics["telemetry_off"] == 1.0 for r in runs)
    # Two trials of gpu: 0.5 each shared a worker's one GPU, at the same time.
    assert all(tag["hpsearch.gpu_ids"] == "0" for tag in tags)
    for node in ray_cluster.worker_node_ids:
        on_node = [r.data.metrics for r in runs if r.data.tags["hpsearch.node"] == node]
        assert len(on_node) == 2, f"{len(on_node)} trials on node {node[:8]}; four slots of two per node were free"
        assert max(m["started_at"] for m in on_node) < min(m["ended_at"] for m in on_node), on_node


def test_submit_to_unreachable_cluster_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.syspath_prepend(str(USER_TRAINABLES))  # the space is checked before the address
    space = tmp_path / "where.yaml"
    space.write_text(WHERE_SPACE)
    (closed_port,) = _free_ports(1)
    result = CliRunner().invoke(main, ["submit", str(space), "--ray-address", f"127.0.0.1:{closed_port}"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(
        f"Error: cannot reach the Ray cluster at 127.0.0.1:{closed_port} (Connection refused)"
    ), result.output


@pytest.mark.parametrize("auth", ["wrong token", "no token", "no token, RAY_AUTH_MODE=token"])
def test_submit_without_the_clusters_token_is_a_user_error(ray_cluster, tmp_path, auth):
    env_auth = {
        "wrong token": {"RAY_AUTH_TOKEN": secrets.token_hex(32)},
        "no token": {},
        "no token, RAY_AUTH_MODE=token": {"RAY_AUTH_MODE": "token"},
    }[auth]
    env = ray_cluster.driver_env(tmp_path, **env_auth)
    # Ray retries a refused connection once a second, 20 times by default; two are enough to show the outcome.
    env["RAY_gcs_server_port_wait_time_s"] = "2"
    space = tmp_path / "where.yaml"
    space.write_text(WHERE_SPACE)

    run = _hpsearch(env, tmp_path, "submit", str(space), "--ray-address", ray_cluster.address, timeout=60)

    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert f"Ray cluster at {ray_cluster.address} refused this driver" in last
    assert "RAY_AUTH_TOKEN" in last and "~/.ray/auth_token" in last
    assert ray_cluster.token not in run.stdout + run.stderr
    # Nothing was recorded: the connection is made before the study is.
    assert not (tmp_path / "home" / "registry.db").exists() and not (tmp_path / "mlflow.db").exists()
