"""`docker compose up` as a new user runs it, on a real Docker Engine, in real containers.

The steps are README.md's "With Docker" commands, word for word (tests/test_compose.py checks they are
there), run with bash in a fresh copy of the repository, in this order; each test is one step of the same
session and leaves the cluster for the next:

  cp .env.example .env, four generated secrets      what Compose makes of the GPU switch
  up -d --build --wait: five services healthy        only 127.0.0.1:8000 (API) and :5000 (MLflow) listen
  sizing: object store in /dev/shm, memory limits    a small study: its trials ran on the worker
  --scale ray-worker=2: a study spread over both     down, up: studies and runs are still there
  down -v: no container, volume or network is left, and the engine the harness started is stopped

What the harness adds for its own engine (host-network builds, local stand-ins for python:3.11-slim and
postgres:17 when the public registry cannot be reached, the local CPU wheel of torch) is in the checkout's
docker-compose.override.yml and in _engine.py / _images.py, never in the product's Dockerfile or compose file.

Not tested here: the CUDA image and GPU workers (docker-compose.gpu.yml). These machines have no GPU and no
NVIDIA runtime, and the CUDA build of torch is a multi-GB download; test_gpu_switch_... checks what Compose
makes of the switch (the CUDA image tag and build argument, the GPU reservation), and the CPU image shares
every line of the Dockerfile with it but the torch index.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from _cluster import (DOWN, DOWN_VOLUMES, PROJECT, SCALE_2, SERVICES, SUBMIT_SMALL, UP, UP_BUILD,
                      Checkout)

pytestmark = pytest.mark.e2e

COLD_UP_TIMEOUT_S = 45 * 60  # a first build from an empty engine: ~10 min on 2 busy cores
UP_TIMEOUT_S = 15 * 60
STUDY_TIMEOUT_S = 15 * 60
UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def _bytes(size: str) -> int:
    """Docker's size notation (1g, 512m, 1gb) in bytes."""
    match = re.fullmatch(r"(\d+)\s*([bkmg])b?", size.strip().lower())
    assert match, f"not a size: {size!r}"
    return int(match.group(1)) * UNITS[match.group(2)]


def _healthy(checkout: Checkout) -> dict[str, list[dict]]:
    """{service: [its containers]}, asserting every container of every service is running and healthy."""
    by_service: dict[str, list[dict]] = {}
    for container in checkout.ps():
        by_service.setdefault(container["Service"], []).append(container)
    assert set(by_service) == set(SERVICES), f"services present: {sorted(by_service)}"
    not_ready = [(c["Name"], c["State"], c.get("Health")) for cs in by_service.values() for c in cs
                 if c["State"] != "running" or c.get("Health") != "healthy"]
    assert not not_ready, f"not running and healthy: {not_ready}"
    return by_service


def _submit(checkout: Checkout, *extra: str) -> dict:
    """README's small study, from this host's `hpsearch` through the API; --json for the test to read it."""
    run = checkout.sh(f"{checkout.client_env_line()}\n{SUBMIT_SMALL} {' '.join(extra)} --json".strip(),
                      timeout=STUDY_TIMEOUT_S)
    summary = json.loads(run.stdout)
    assert summary["status"] == "succeeded", summary
    assert summary["n_trials"] == 4 and summary["n_failed"] == 0, summary
    assert "trial 0000 started" in run.stderr, run.stderr[-2000:]  # --wait followed the driver's log
    return summary


def _mlflow(checkout: Checkout):
    """MLflow's own client on the published port (imported here: collecting this file stays cheap), logged in
    as the service account of .env (MLflow's client reads the login from the environment)."""
    from mlflow.tracking import MlflowClient

    password = re.search(r"^HPSEARCH_MLFLOW_PASSWORD=(.+)$", (checkout.dir / ".env").read_text(), re.M).group(1)
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password)
    return MlflowClient(tracking_uri=checkout.mlflow_url)


def _trial_runs(checkout: Checkout, summary: dict) -> list:
    client = _mlflow(checkout)
    runs = client.search_runs([summary["mlflow_experiment_id"]],
                              filter_string=f"tags.`hpsearch.study` = '{summary['study_id']}'")
    return [r for r in runs if "hpsearch.trial" in r.data.tags]


def _workers(checkout: Checkout) -> dict[str, str]:
    """{container IP: Ray node id} of the ray-worker containers, as Ray itself sees them."""
    ids = [c["ID"] for c in checkout.ps() if c["Service"] == "ray-worker"]
    ips = {checkout.container_ip(info) for info in checkout.inspect(ids)}
    nodes = {n["NodeManagerAddress"]: n["NodeID"] for n in checkout.ray_nodes()}
    assert ips <= set(nodes), f"worker containers {sorted(ips)}, Ray nodes at {sorted(nodes)}"
    return {ip: nodes[ip] for ip in ips}


def _compose_urls(checkout: Checkout) -> set[tuple[str, str, int]]:
    """(service, host address, host port) of every published port."""
    published = set()
    for c in checkout.ps():
        for p in c.get("Publishers") or []:
            if p.get("PublishedPort"):
                published.add((c["Service"], p["URL"], p["PublishedPort"]))
    return published


def _listening(engine) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets listening in the host's network namespace that belong to the
    engine's processes (dockerd and the docker-proxy of each published port)."""
    pids = engine.daemon_pids()
    host_net = Path("/proc/self/ns/net").readlink()
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/ns/net").readlink() != host_net:
                continue
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = str(fd.readlink()) if fd.is_symlink() else ""
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            if width == 8:
                ip = ".".join(str(b) for b in reversed(bytes.fromhex(address)))
            else:
                ip = "::" if set(address) == {"0"} else address
            found.add((ip, int(port, 16)))
    return found


# -------------------------------------------------------------------------------------------------------------


def test_gpu_switch_adds_the_cuda_image_and_a_gpu_reservation(checkout):
    """What Compose makes of README's GPU switch; the CUDA image itself cannot be built and run here."""
    env = {"COMPOSE_FILE": "docker-compose.yml:docker-compose.gpu.yml"}  # the line .env.example offers
    gpu = json.loads(checkout.engine.docker("compose", "config", "--format", "json", cwd=checkout.dir,
                                            env={**checkout.env(), **env}, timeout=120).stdout)
    cpu = json.loads(checkout.engine.docker("compose", "--file", "docker-compose.yml", "config", "--format",
                                            "json", cwd=checkout.dir, env=checkout.env(), timeout=120).stdout)
    devices = gpu["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    # `all` GPUs: Compose 2.24 writes it as is, 2.40 as -1.
    assert [(d["driver"], d["capabilities"], d.get("count")) for d in devices] in (
        [("nvidia", ["gpu"], -1)], [("nvidia", ["gpu"], "all")])
    for name in ("mlflow", "ray-head", "ray-worker", "api"):
        assert gpu["services"][name]["image"] == "hpsearch:latest-cuda"
        assert cpu["services"][name]["image"] == "hpsearch:latest"
        assert "deploy" not in cpu["services"][name]
    def args(config: dict) -> dict:  # Compose 2.24 writes build args as a list of KEY=VALUE, 2.40 as a map
        given = config["services"]["ray-head"]["build"]["args"]
        return dict(a.split("=", 1) for a in given) if isinstance(given, list) else given

    assert args(gpu)["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    assert args(cpu)["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    # The CPU file reserves no device anywhere: `up` works on a host without the NVIDIA runtime.
    assert "nvidia" not in json.dumps(cpu)


def test_up_builds_the_image_and_every_service_becomes_healthy(checkout):
    checkout.sh(UP_BUILD, timeout=COLD_UP_TIMEOUT_S, what="up --build --wait")
    services = _healthy(checkout)
    assert len(services["ray-worker"]) == 1


def test_only_the_api_and_the_mlflow_ui_are_published_on_loopback(checkout, engine):
    expected = {("api", "127.0.0.1", checkout.api_port), ("mlflow", "127.0.0.1", checkout.mlflow_port)}
    assert _compose_urls(checkout) == expected
    if engine.started:  # our engine: its processes are ours to look at
        assert _listening(engine) == {("127.0.0.1", checkout.api_port), ("127.0.0.1", checkout.mlflow_port)}
    # And they answer: the MLflow UI with its login only, and the API with its token only.
    import httpx

    assert "Default" in [e.name for e in _mlflow(checkout).search_experiments()]  # a fresh database's one
    search = f"{checkout.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=5"
    assert httpx.get(search, timeout=10).status_code == 401
    assert httpx.get(search, timeout=10, auth=("admin", "wrong-password-123")).status_code == 401
    token = re.search(r"^HPSEARCH_TOKEN=(.+)$", (checkout.dir / ".env").read_text(), re.M).group(1)
    assert httpx.get(f"{checkout.api_url}/healthz", timeout=10).status_code == 401
    assert httpx.get(f"{checkout.api_url}/healthz", timeout=10,
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_ray_object_store_is_in_dev_shm_and_every_service_has_its_memory_limit(checkout):
    env = dict(re.findall(r"^([A-Z_]+)=(.*)$", (checkout.dir / ".env").read_text(), re.M))
    limits = {"postgres": env["HPSEARCH_POSTGRES_MEMORY"], "mlflow": env["HPSEARCH_MLFLOW_MEMORY"],
              "ray-head": env["HPSEARCH_HEAD_MEMORY"], "ray-worker": env["HPSEARCH_WORKER_MEMORY"],
              "api": env["HPSEARCH_API_MEMORY"]}
    shm = _bytes(env["HPSEARCH_RAY_SHM_SIZE"])
    containers = {c["ID"]: c["Service"] for c in checkout.ps()}
    ray_ips = {}
    for info in checkout.inspect(list(containers)):
        service = next(s for short, s in containers.items() if info["Id"].startswith(short))
        assert info["HostConfig"]["Memory"] == _bytes(limits[service]), (service, info["HostConfig"]["Memory"])
        if service.startswith("ray-"):
            assert info["HostConfig"]["ShmSize"] == shm, (service, info["HostConfig"]["ShmSize"])
            ray_ips[checkout.container_ip(info)] = service

    nodes = checkout.ray_nodes()
    assert {n["NodeManagerAddress"] for n in nodes} == set(ray_ips), nodes
    for node in nodes:
        service = ray_ips[node["NodeManagerAddress"]]
        store = node["Resources"]["object_store_memory"]
        # 90 % of /dev/shm, as the role script computes it from the mount (page rounding aside).
        assert 0.85 * shm <= store <= 0.9 * shm + 4096, (service, store, shm)
        # Ray sizes its memory from the container's limit, not the host's RAM.
        assert node["Resources"]["memory"] <= _bytes(limits[service]), (service, node["Resources"]["memory"])
    logs = checkout.compose("logs", "--no-color", "ray-head", "ray-worker", timeout=120).stdout
    assert "instead of /dev/shm" not in logs and "harm performance" not in logs


def test_a_study_runs_its_trials_on_the_worker_container(checkout, state):
    summary = _submit(checkout)
    workers = _workers(checkout)
    runs = _trial_runs(checkout, summary)
    assert len(runs) == 4, [r.info.run_id for r in runs]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["hpsearch.node_ip"] in workers, run.data.tags
        assert run.data.tags["hpsearch.node"] == workers[run.data.tags["hpsearch.node_ip"]]
    state["studies"] = {summary["study_id"]: (summary["mlflow_experiment_id"], {r.info.run_id for r in runs})}


def test_scaled_to_two_workers_a_study_spreads_over_both(checkout, state):
    checkout.sh(SCALE_2, timeout=UP_TIMEOUT_S, what="scale to 2 workers")
    assert len(_healthy(checkout)["ray-worker"]) == 2
    workers = _workers(checkout)
    assert len(workers) == 2
    # Each trial asks for all the CPUs of a worker: two at a time (the space's concurrency) need both workers.
    cpus = {n["NodeID"]: n["Resources"].get("CPU", 0) for n in checkout.ray_nodes()}
    per_worker = int(min(cpus[node] for node in workers.values()))
    summary = _submit(checkout, f"--set resources.cpu={per_worker}")
    runs = _trial_runs(checkout, summary)
    assert {r.data.tags["hpsearch.node_ip"] for r in runs} == set(workers)
    assert {r.data.tags["hpsearch.node"] for r in runs} == set(workers.values())
    state["studies"][summary["study_id"]] = (summary["mlflow_experiment_id"], {r.info.run_id for r in runs})


def test_down_then_up_keeps_the_studies_and_their_runs(checkout, state):
    assert len(state.get("studies", {})) == 2, "the two studies of the earlier steps"
    checkout.sh(DOWN, timeout=UP_TIMEOUT_S, what="down")
    assert checkout.ps() == []
    volumes = checkout.engine.docker("volume", "ls", "--quiet", "--filter",
                                     f"label=com.docker.compose.project={PROJECT}").stdout.split()
    assert len(volumes) == 3, volumes

    checkout.sh(UP, timeout=UP_TIMEOUT_S, what="up again")
    _healthy(checkout)
    listed = checkout.sh(f"{checkout.client_env_line()}\nhpsearch list --json", timeout=120)
    studies = {s["id"]: s for s in json.loads(listed.stdout)["studies"]}
    for study_id, (experiment_id, run_ids) in state["studies"].items():
        assert studies[study_id]["status"] == "succeeded", studies.get(study_id)
        status = json.loads(checkout.sh(f"{checkout.client_env_line()}\nhpsearch status {study_id} --json",
                                        timeout=120).stdout)
        assert len(status["trials"]) == 4
        kept = {r.info.run_id for r in _trial_runs(checkout, {"study_id": study_id,
                                                              "mlflow_experiment_id": experiment_id})}
        assert kept == run_ids


def test_down_v_removes_every_container_volume_and_network(checkout):
    checkout.sh(DOWN_VOLUMES, timeout=UP_TIMEOUT_S, what="down -v")
    assert checkout.ps() == []
    label = f"label=com.docker.compose.project={PROJECT}"
    engine = checkout.engine
    assert engine.docker("volume", "ls", "--quiet", "--filter", label).stdout.split() == []
    assert engine.docker("network", "ls", "--quiet", "--filter", label).stdout.split() == []
    assert engine.docker("ps", "--all", "--quiet", "--filter", label).stdout.split() == []
