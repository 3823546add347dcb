"""Attacks on hpsearch, run for real, and the refusals docs/security.md promises.

The cluster attacks run against `scripts/local-cluster up --workers 1` as a token holder would: HTTP to the API
with the bearer token, and `hpsearch submit --server`. The embedded-Ray and file checks run a real study on
this machine. Listening sockets are read from /proc (what `ss -ltnp` shows), by the processes of the study or
the cluster."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from service._sockets import is_loopback, tcp_listeners
from support import local_cluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"
USER_TRAINABLES = Path(__file__).parent / "user_trainables"

TINY = """\
name: private-state
trainable: mlp
metric: val_acc
budget: {trials: 1, max_epochs: 1, concurrency: 1}
params: {}
"""

# A study that runs long enough (two trials of 4 x 1 s) for its listeners to be seen.
SLOW_LOCAL = """\
name: listeners
trainable: "slow:train"
metric: score
mode: max
budget: {trials: 2, max_epochs: 4, concurrency: 2}
sampler: {type: random, seed: 1}
scheduler: {type: fifo}
params:
  x: {type: float, low: 0.0, high: 1.0}
fixed: {sleep: 1.0}
"""

CLUSTER_STUDY = """\
name: security-where
trainable: "where:train"
metric: score
mode: max
budget: {trials: 2, max_epochs: 2, concurrency: 2}
sampler: {type: random, seed: 3}
scheduler: {type: fifo}
resources: {cpu: 1, gpu: 0.5}
params:
  x: {type: float, low: 0.0, high: 1.0}
fixed: {sleep: 0.2}
"""

# The attacks of issue 13: a token holder naming a callable that runs a shell, with fixed keys as its arguments.
SHELL_SPACE = """\
name: shell
trainable: "{trainable}"
metric: score
budget: {{trials: 1, max_epochs: 1}}
params: {{}}
fixed: {{"-c": "touch {marker}"}}
"""


# --------------------------------------------------------------------------------------------------------------
# Listening sockets, from /proc


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def listeners_by_pid(pids) -> dict[int, set[tuple[str, str, int]]]:
    """pid -> (process name, address, port) of every TCP socket it listens on, for the processes `pids` that
    listen on any."""
    table = tcp_listeners()
    found = {pid: {(_comm(pid), *table[inode]) for inode in _socket_inodes(pid) if inode in table} for pid in pids}
    return {pid: seen for pid, seen in found.items() if seen}


def listeners(pids) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket the processes `pids` listen on."""
    return set().union(*listeners_by_pid(pids).values())


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(text[text.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                continue
    return parents


def descendants(*roots: int) -> set[int]:
    """The processes `roots` and all they started, and those started in turn."""
    parents, found, frontier = _parents(), set(roots), list(roots)
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid and child not in found]
        found.update(children)
        frontier += children
    return found


def marked(mark: str) -> set[int]:
    """Processes whose environment carries `mark` (NAME=VALUE): local-cluster marks all it starts, and Ray's
    processes and job drivers inherit it."""
    needle = b"\0" + mark.encode() + b"\0"
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in b"\0" + Path(f"/proc/{entry}/environ").read_bytes() + b"\0":
                    found.add(int(entry))
            except OSError:
                continue
    return found


def test_security_state_is_private(tmp_path):
    """Everything a local study writes under HPSEARCH_HOME (registry, Optuna storage, log, checkpoints) and its
    MLflow store are the user's alone: folders 0700, files 0600."""
    space = tmp_path / "space.yaml"
    space.write_text(TINY)
    env = dict(os.environ, HPSEARCH_HOME=str(tmp_path / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    done = subprocess.run([sys.executable, "-m", "service.cli", "submit", str(space), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    paths = [tmp_path / "home", *(tmp_path / "home").rglob("*"), *tmp_path.glob("mlflow.db*")]  # WAL files too
    assert any(p.name.endswith(".log") for p in paths) and any(p.name == "checkpoint.pt" for p in paths)
    assert "mlflow.db" in {p.name for p in paths}
    loose = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in paths
             if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert loose == []


def test_security_embedded_ray_refuses_calls_without_its_token(tmp_path):
    """A Ray started by a plain `ray.init` (without hpsearch's loopback switch) listens on every interface, and
    so do the nodes of a cluster spread over hosts outside compose (docs/security.md): its servers must refuse
    a client that lacks the instance's token, or has a wrong one."""
    import ray

    ray.init(address="local", include_dashboard=False, log_to_driver=False, num_cpus=1)
    try:
        gcs = ray.get_runtime_context().gcs_address
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
        join = f"import ray; ray.init(address={gcs!r}); print('JOINED')"
        for extra in ({"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "x" * 32}):
            attempt = subprocess.run([sys.executable, "-c", join], env={**env, **extra}, capture_output=True,
                                     text=True, timeout=180)
            assert attempt.returncode != 0 and "JOINED" not in attempt.stdout, (extra, attempt.stdout[-500:])
    finally:
        ray.shutdown()


def test_security_embedded_study_listens_on_loopback_only(tmp_path):
    """A study on a laptop (embedded Ray, no --server) opens no socket beyond loopback: Ray's GCS, raylet, object
    manager, driver and trial workers, dashboard agent and metrics exporters, all of them (service/_ray.py's
    loopback_node). Sampled every half second while the study runs."""
    space = tmp_path / "space.yaml"
    space.write_text(SLOW_LOCAL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSEARCH_", "MLFLOW_"))}
    env.update(HPSEARCH_HOME=str(tmp_path / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               PYTHONPATH=os.pathsep.join([str(REPO), str(USER_TRAINABLES)]))
    seen: set = set()
    with open(tmp_path / "out.log", "w") as out:
        study = subprocess.Popen([sys.executable, "-m", "service.cli", "submit", str(space), "--quiet"], env=env,
                                 cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while study.poll() is None and time.monotonic() < deadline:
            seen |= listeners(descendants(study.pid))
            time.sleep(0.5)
        if study.poll() is None:
            study.kill()
    assert study.wait(timeout=30) == 0, (tmp_path / "out.log").read_text()[-3000:]
    names = {name for name, _, _ in seen}
    # The sample did see Ray's servers: the check below is not empty.
    assert {"gcs_server", "raylet"} <= names, seen
    outside = sorted(listener for listener in seen if not is_loopback(listener[1]))
    assert outside == [], "listening beyond loopback: " + "; ".join(map(str, outside))


# --------------------------------------------------------------------------------------------------------------
# Attacks on a local cluster, as a token holder


@pytest.fixture(scope="module")
def cluster():
    """`scripts/local-cluster up --workers 1` (MLflow behind its login) admitting the test modules (tests/user_trainables); `down` at the end."""
    yield from local_cluster(workers=1)


def _http(url: str, body=None, token=None, method=None, raw: bytes = None, login=None) -> tuple[int, str]:
    """(status, body text) of one request, with a bearer token or a (user, password) login; an HTTP error status
    is an answer, not an exception."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if login:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(login).encode()).decode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _api(cluster, path: str, body=None, method=None, raw: bytes = None) -> tuple[int, str]:
    return _http(cluster["env"]["HPSEARCH_SERVER"] + path, body, cluster["env"]["HPSEARCH_TOKEN"], method, raw)


def _one_json_line(text: str) -> dict:
    assert "\n" not in text.strip(), text
    answer = json.loads(text)
    assert set(answer) == {"detail"}, answer
    return answer


def _log_files(cluster) -> list[Path]:
    """Everything the cluster logged: local-cluster's logs of each process, Ray's own session logs, the
    studies' logs under the shared storage."""
    roots = [cluster["dir"] / "logs", Path(cluster["info"]["ray_temp_dir"]), cluster["dir"] / "hpsearch"]
    return [p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and (root.name == "logs" or p.suffix in (".log", ".out", ".err", ".txt") or "logs" in p.parts)]


def _study_ids(cluster) -> list[str]:
    status, body = _api(cluster, "/studies")
    assert status == 200, body
    return [study["study_id"] for study in json.loads(body)["studies"]]


@pytest.mark.parametrize("trainable", ["os:system", "subprocess:run", "subprocess:Popen", "builtins:exec"])
def test_security_token_holder_cannot_run_a_shell(cluster, trainable):
    """Issue 13's first attack: a callable of the standard library as the trainable, its fixed keys as a shell
    command line. The API refuses it by name (422 naming the policy), no study is recorded or launched, and
    the command never runs anywhere on this machine."""
    marker = cluster["root"] / f"pwned-{trainable.replace(':', '-')}"
    before = _study_ids(cluster)
    status, body = _api(cluster, "/studies", {"space": SHELL_SPACE.format(trainable=trainable, marker=marker)})
    assert status == 422, body
    detail = _one_json_line(body)["detail"]
    assert "not admitted by the trainable policy" in detail and "HPSEARCH_TRAINABLE_MODULES" in detail, detail
    # The CLI of a team member says the same and exits non-zero.
    space = cluster["root"] / f"shell-{trainable.replace(':', '-')}.yaml"
    space.write_text(SHELL_SPACE.format(trainable=trainable, marker=marker))
    submit = subprocess.run([sys.executable, "-m", "service.cli", "submit", str(space), "--server",
                             cluster["env"]["HPSEARCH_SERVER"]], env=cluster["env"], cwd=cluster["root"],
                            capture_output=True, text=True, timeout=120)
    assert submit.returncode != 0 and "trainable policy" in submit.stderr, submit.stderr[-2000:]
    time.sleep(2)  # a launched driver would have run by now
    assert not marker.exists()
    assert _study_ids(cluster) == before


def test_security_api_never_imports_a_submitted_module(cluster):
    """`this` prints the Zen of Python when it is imported: refused by name, and the API's log shows that the
    API process never imported it (nor `antigravity`, which would open a browser)."""
    for trainable in ("this:x", "antigravity:x", "pip.__main__:x", ".where:train"):
        status, body = _api(cluster, "/studies", {"space": SHELL_SPACE.format(trainable=trainable, marker="/nowhere")})
        assert status == 422, (trainable, body)
        _one_json_line(body)
    time.sleep(1)
    assert "The Zen of Python" not in (cluster["dir"] / "logs" / "api.log").read_text()


@pytest.mark.parametrize("filename", ["/etc/passwd", "../x.yaml", "a\x00b.yaml", "x/../../etc/passwd", ".."])
def test_security_filename_is_a_name_never_a_location(cluster, filename):
    status, body = _api(cluster, "/studies", {"space": TINY, "filename": filename})
    assert status == 422, body
    assert "filename" in _one_json_line(body)["detail"]


@pytest.mark.parametrize("path", ["/etc/passwd", "../../etc/passwd", "data/../../../etc/shadow"])
def test_security_data_paths_name_no_file_of_the_host(cluster, path):
    """A space's data files are the cluster's (HPSEARCH_DATA_DIR, none here): a path to anything on the host
    is 422 with one JSON line naming the field, and no study is recorded."""
    before = _study_ids(cluster)
    space = TINY.replace("metric: val_acc", f"data: {{dataset: csv, path: '{path}', target: y}}\nmetric: val_acc")
    status, body = _api(cluster, "/studies", {"space": space, "filename": "escape.yaml"})
    assert status == 422, body
    assert "data.path" in _one_json_line(body)["detail"]
    assert _study_ids(cluster) == before


def test_security_keys_mlflow_would_refuse_are_422_not_a_crashed_study(cluster):
    """A fixed key MLflow refuses as a param name would have crashed the study at its first run: the API
    refuses it up front (422, one JSON line naming the key and MLflow's rule), and no study is recorded."""
    before = _study_ids(cluster)
    space = CLUSTER_STUDY.replace("fixed: {sleep: 0.2}", "fixed: {sleep: 0.2, 'units@layer': 64}")
    assert "units@layer" in space
    status, body = _api(cluster, "/studies", {"space": space, "filename": "keys.yaml"})
    assert status == 422, body
    detail = _one_json_line(body)["detail"]
    assert "units@layer" in detail and "MLflow" in detail, detail
    assert _study_ids(cluster) == before


def test_security_malformed_bodies_are_one_json_line_never_500(cluster):
    bodies = [b'{"space": "a\\u0000b", "filename": "x\\u0000"}', b"\xff\xfe not json", b"[]",
              json.dumps({"space": "!!python/object/apply:os.system ['id']"}).encode()]
    for raw in bodies:
        status, body = _api(cluster, "/studies", raw=raw, method="POST")
        assert status in (400, 422), (raw, status, body)
        _one_json_line(body)


def test_security_unknown_study_names_no_store(cluster):
    status, body = _api(cluster, "/studies/no-such-study")
    assert status == 404, body
    detail = _one_json_line(body)["detail"]
    assert "no-such-study" in detail
    for leak in ("postgres", "5432", cluster["info"]["databases"]["hpsearch"], "psycopg", "sqlite", "@"):
        assert leak not in detail, (leak, detail)


def test_security_a_token_in_a_query_string_stays_out_of_the_logs(cluster):
    secret = "SECRET" + os.urandom(8).hex()
    for path in (f"/studies?token={secret}", f"/studies/x?access_token={secret}", f"/healthz?t={secret}"):
        status, body = _api(cluster, path)
        assert status < 500, body
        assert secret not in body
    time.sleep(1)
    assert [str(p) for p in _log_files(cluster) if secret in p.read_text(errors="replace")] == []


def test_security_ray_refuses_requests_without_its_token(cluster):
    """ShadowRay (CVE-2023-48022): the Jobs API runs whatever entrypoint it is given. Without the cluster's token,
    or with a wrong one, the dashboard answers 401/403 to every read and every job submission, and nothing
    runs."""
    dashboard = cluster["info"]["urls"]["ray_dashboard"]
    marker = cluster["root"] / "pwned-by-a-ray-job"
    for token in (None, "x" * 64, cluster["env"]["HPSEARCH_TOKEN"]):  # none, a guess, the API's (not Ray's)
        for method, path, body in (("POST", "/api/jobs/", {"entrypoint": f"touch {marker}"}),
                                   ("GET", "/api/jobs/", None), ("GET", "/api/v0/nodes", None),
                                   ("GET", "/api/version", None), ("GET", "/nodes?view=summary", None)):
            status, answer = _http(dashboard + path, body, token, method)
            assert status in (401, 403), (token is not None, method, path, status, answer[:300])
    # The token holders of the cluster's Ray (the API, the drivers) are let in.
    status, _ = _http(dashboard + "/api/jobs/", token=(cluster["dir"] / "ray_token").read_text().strip())
    assert status == 200
    time.sleep(2)
    assert not marker.exists()


def test_security_mlflow_refuses_requests_without_a_login(cluster):
    """MLflow runs its own login (basic-auth): reading, creating experiments and uploading artifacts without
    the login, or with a wrong password, is 401; the service account of DIR/env gets in. /health stays open
    for the health check."""
    mlflow = cluster["info"]["urls"]["mlflow"]
    user, password = cluster["env"]["MLFLOW_TRACKING_USERNAME"], cluster["env"]["MLFLOW_TRACKING_PASSWORD"]
    attempts = [("GET", "/api/2.0/mlflow/experiments/search?max_results=5", None),
                ("POST", "/api/2.0/mlflow/experiments/create", {"name": "intruder"}),
                ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/intruder.txt", None),
                ("GET", "/ajax-api/2.0/mlflow/experiments/search?max_results=5", None)]
    for login in (None, (user, "wrong-" + password), ("intruder", password)):
        for method, path, body in attempts:
            status, answer = _http(mlflow + path, body, method=method, login=login,
                                   raw=b"payload" if method == "PUT" else None)
            assert status == 401, (login and login[0], method, path, status, answer[:300])
    status, answer = _http(mlflow + "/api/2.0/mlflow/experiments/search?max_results=5", login=(user, password))
    assert status == 200, answer
    assert _http(mlflow + "/health")[0] == 200
    # Each MLflow worker keeps a login it checked for 60 s, so the drivers' requests do not each pay scrypt;
    # logged-in users read everything; no secret in the file.
    settings = (cluster["dir"] / "mlflow-auth.ini").read_text()
    assert "auth_cache_ttl_seconds = 60" in settings and "default_permission = READ" in settings
    assert password not in settings


def test_security_a_study_runs_and_no_secret_reaches_a_log(cluster, monkeypatch):
    """After a real study through the API (driver on the head, trials on the worker), neither the API token nor
    the Ray token appears in any log: local-cluster's, Ray's session logs, the study's own."""
    space = cluster["root"] / "where.yaml"
    space.write_text(CLUSTER_STUDY)
    run = subprocess.run([sys.executable, "-m", "service.cli", "submit", str(space), "--wait", "--json"],
                         env=cluster["env"], cwd=cluster["root"], capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["status"] == "succeeded"
    # The driver logged its runs through MLflow's login (the head's service account).
    from mlflow.tracking import MlflowClient

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, cluster["env"][name])
    runs = MlflowClient(cluster["env"]["MLFLOW_TRACKING_URI"]).search_runs([summary["mlflow_experiment_id"]])
    assert len(runs) == 3  # the parent and one per trial
    # The trial workers had MLflow's and Ray's usage reporting off (tests/user_trainables/where.py).
    assert [r.data.metrics.get("telemetry_off") for r in runs if "hpsearch.trial" in r.data.tags] == [1.0, 1.0]
    logs = _log_files(cluster)
    assert any(p.name == "api.log" for p in logs) and any("session_" in str(p) for p in logs)
    leaks = [(str(p), i) for p in logs for i, secret in enumerate(cluster["secrets"])
             if secret in p.read_text(errors="replace")]
    assert leaks == []


def test_security_cluster_files_are_private(cluster):
    """DIR, its logs, tokens, state, the shared storage (studies included, after the study above) and MLflow's
    artifacts: folders 0700, files 0600; nobody else on the host reads them."""
    directory = cluster["dir"]
    paths = [directory, *directory.rglob("*"), Path(cluster["info"]["ray_temp_dir"])]
    assert any(p.name == "api.log" for p in paths) and any(p.name == "cluster.json" for p in paths)
    loose = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in paths
             if p.exists() and not p.is_symlink() and p.stat().st_mode & 0o077]
    assert loose == []


def _cluster_listeners(cluster) -> set[tuple[str, str, int]]:
    return listeners(_cluster_pids(cluster))


def _environment(pid: int) -> dict[str, str]:
    """The environment a process started with (what it sets later itself is not in /proc)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_security_cluster_processes_send_no_usage_data(cluster):
    """Every process the cluster's scripts start has MLflow's usage reporting off from its start, and every
    process of the Ray nodes Ray's too. Read from /proc for the processes that keep their environment there;
    Ray's own Python processes (`ray::...`) write their title over it, so trial workers report theirs from
    inside (test_security_a_study_runs_and_no_secret_reaches_a_log), and the API (`hpsearch serve`) switches
    both off itself as it starts (tests/test_telemetry.py)."""
    environments = {}
    # The processes whose environment can be read: those that still carry the cluster's mark in it.
    for pid in marked(f"HPSEARCH_LOCAL_CLUSTER={cluster['dir']}"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"\0serve\0" not in cmdline and not cmdline.startswith(b"ray::"):
                environments[pid] = (_comm(pid), _environment(pid))
        except OSError:  # ended meanwhile
            continue
    mlflow = descendants(*(pid for pid, (name, _) in environments.items() if name == "mlflow"))
    names = {name for name, _ in environments.values()}
    assert mlflow and {"raylet", "gcs_server"} <= names, names
    reporting = sorted((name, pid) for pid, (name, env) in environments.items()
                       if env.get("MLFLOW_DISABLE_TELEMETRY") != "true"
                       or (pid not in mlflow and env.get("RAY_USAGE_STATS_ENABLED") != "0"))
    assert reporting == []


def _cluster_pids(cluster) -> set[int]:
    """Every process of the cluster: those local-cluster started (cluster.json) and all they started, and every
    process carrying the cluster's mark in its environment (job drivers run in sessions of their own). Neither
    alone is enough: Ray's processes write their titles over the start of their environment, which can take
    the mark with it (a worker node's agents)."""
    started = [p["pid"] for p in json.loads((cluster["dir"] / "cluster.json").read_text())["processes"].values()]
    return descendants(*started, *marked(f"HPSEARCH_LOCAL_CLUSTER={cluster['dir']}"))


def _node_addresses(cluster) -> set[str]:
    """The addresses local-cluster's Ray nodes run on, as the dashboard lists them."""
    token = (cluster["dir"] / "ray_token").read_text().strip()
    status, body = _http(cluster["info"]["urls"]["ray_dashboard"] + "/api/v0/nodes?limit=100", token=token)
    assert status == 200, body
    return {node["node_ip"] for node in json.loads(body)["data"]["result"]["result"]}


def test_security_cluster_services_listen_on_loopback_only(cluster):
    """The API, MLflow and the Ray dashboard (with the Jobs API) listen on 127.0.0.1 only."""
    seen = _cluster_listeners(cluster)
    ports = cluster["info"]["ports"]
    for service in ("api", "mlflow", "ray_dashboard"):
        addresses = {address for _, address, port in seen if port == ports[service]}
        assert addresses == {"127.0.0.1"}, (service, addresses)


def test_security_cluster_listens_on_loopback_only_during_a_study(cluster, monkeypatch):
    """Every Ray node of the cluster runs on 127.0.0.1 (all of them are on this machine), and every listener of
    every process of the cluster is on loopback: none on 0.0.0.0, [::] or the machine's address. Sampled every
    half second while a study runs through the API: each of its trials' worker processes (they report their
    `worker_pid`) was seen listening, beside Ray's GCS, raylets, object managers and agents and the study's
    driver (scripts/cluster/ray-start-loopback)."""
    assert _node_addresses(cluster) == {"127.0.0.1"}
    space = cluster["root"] / "listeners.yaml"
    space.write_text(CLUSTER_STUDY.replace("security-where", "security-listeners")
                     .replace("max_epochs: 2", "max_epochs: 4").replace("sleep: 0.2", "sleep: 1.0"))
    by_pid: dict[int, set] = {}
    with open(cluster["root"] / "listeners.json", "w") as out, open(cluster["root"] / "listeners.log", "w") as err:
        study = subprocess.Popen([sys.executable, "-m", "service.cli", "submit", str(space), "--wait", "--json"],
                                 env=cluster["env"], cwd=cluster["root"], stdout=out, stderr=err)
        deadline = time.monotonic() + 400
        while study.poll() is None and time.monotonic() < deadline:
            for pid, seen in listeners_by_pid(_cluster_pids(cluster)).items():
                by_pid.setdefault(pid, set()).update(seen)
            time.sleep(0.5)
        if study.poll() is None:
            study.kill()
    assert study.wait(timeout=30) == 0, (cluster["root"] / "listeners.log").read_text()[-3000:]
    summary = json.loads((cluster["root"] / "listeners.json").read_text())
    from mlflow.tracking import MlflowClient

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, cluster["env"][name])
    runs = MlflowClient(cluster["env"]["MLFLOW_TRACKING_URI"]).search_runs(
        [summary["mlflow_experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['mlflow_parent_run_id']}'")
    # The sample did see Ray's servers and every trial's worker: the check below is not empty.
    trial_pids = {int(run.data.metrics["worker_pid"]) for run in runs}
    assert len(runs) == 2 and trial_pids <= set(by_pid), (trial_pids, sorted(by_pid))
    seen = set().union(*by_pid.values())
    assert {"gcs_server", "raylet"} <= {name for name, _, _ in seen}, seen
    outside = sorted(listener for listener in seen if not is_loopback(listener[1]))
    assert outside == [], "listening beyond loopback: " + "; ".join(map(str, outside))
