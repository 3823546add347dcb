"""docker-compose.yml, its role scripts and the image, checked without Docker.

The compose file is read with PyYAML and its `${VAR...}` references are resolved to their defaults, as
`docker compose` does with an empty .env. The role scripts are run with stand-in `ray`, `mlflow` and `hpsearch`
commands that print the arguments they were given, so the tests see the exact command line each container
runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
GPU_FILE = REPO / "docker-compose.gpu.yml"  # the GPU switch: added to COMPOSE_FILE
README = REPO / "README.md"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
CLUSTER_SCRIPTS = REPO / "scripts" / "cluster"
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"

SERVICES = ("postgres", "mlflow", "ray-head", "ray-worker", "api")
ROLES = ("mlflow", "ray-head", "ray-worker", "api")  # the services that run a script of ours
IMAGE_SCRIPTS = "/app/scripts/cluster/"  # where the Dockerfile puts scripts/cluster/ (WORKDIR /app)

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; `$$` is a literal dollar sign.
REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]*:([^@\s]+)@")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _gpu() -> dict:
    return yaml.safe_load(GPU_FILE.read_text())


def _seconds(duration: str) -> float:
    """A compose duration such as 90s, 5m or 1m30s."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), f"not a duration: {duration!r}"
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


def _bytes(size: str) -> int:
    """Docker's size notation (1g, 512m, 1gb) in bytes."""
    match = re.fullmatch(r"(\d+)([bkmg])b?", size.strip().lower())
    assert match, f"not a size: {size!r}"
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2))


def _resolve(value: str) -> str:
    """`value` as compose interpolates it when no variable is set: defaults filled in, required ones marked."""
    def default(match: re.Match) -> str:
        name, op, arg = match.groups()
        return arg if op in (":-", "-") else f"<{name}>"
    return REFERENCE.sub(default, value)


def _env(service: dict) -> dict:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def _ports(service: dict) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port, defaults resolved."""
    published = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published.append((_resolve(str(port.get("host_ip", ""))), _resolve(str(port.get("published", ""))),
                              str(port["target"])))
            continue
        parts = _resolve(str(port)).split(":")
        if len(parts) == 3:
            published.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            published.append(("", parts[0], parts[1]))
        else:
            published.append(("", "", parts[0]))
    return published


def _command(service: dict) -> list[str]:
    command = service.get("entrypoint") or service.get("command")
    return command if isinstance(command, list) else str(command).split()


def _local_cluster():
    """scripts/local-cluster as a module (it has no .py suffix; importing it starts nothing)."""
    loader = importlib.machinery.SourceFileLoader("_local_cluster", str(LOCAL_CLUSTER))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up there
    try:
        loader.exec_module(module)
    finally:
        del sys.modules[loader.name]
    return module


def _strings(node, path=""):
    """Every (path, string) in the parsed compose file, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", str(key)
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif node is not None:
        yield path, str(node)


@pytest.fixture
def fake_tools(tmp_path):
    """A PATH whose ray, mlflow and hpsearch print their arguments, one per line, and exit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ray", "mlflow", "hpsearch"):
        path = bin_dir / tool
        path.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
        path.chmod(0o755)
    return f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"


def _run_role(role: str, path: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLUSTER_SCRIPTS / role)], env={"PATH": path, **env}, capture_output=True,
                          text=True, timeout=30)


def _option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


# --------------------------------------------------------------------------------------------------------------


def test_compose_defines_the_cluster_services():
    services = _compose()["services"]
    missing = [name for name in SERVICES if name not in services]
    assert not missing, f"docker-compose.yml lacks the services {missing}"


def test_compose_publishes_ports_on_loopback_by_default():
    services = _compose()["services"]
    published = {name: _ports(service) for name, service in services.items() if service.get("ports")}
    assert set(published) == {"api", "mlflow"}, f"only the API and the MLflow UI are published, not {published}"
    for name, ports in published.items():
        for host_ip, _, _ in ports:
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'every address'}, not 127.0.0.1"
    assert _ports(services["api"])[0][1:] == ("8000", "8000")
    assert _ports(services["mlflow"])[0][1:] == ("5000", "5000")


@pytest.mark.parametrize("name", ["postgres", "ray-head", "ray-worker"])
def test_compose_internal_services_publish_nothing(name):
    service = _compose()["services"][name]
    assert not service.get("ports"), f"{name} publishes {service['ports']}"
    assert service.get("network_mode") != "host", f"{name} shares the host's network"


def test_compose_workers_reserve_no_device_so_up_works_without_a_gpu_and_scale():
    compose = _compose()
    worker = compose["services"]["ray-worker"]
    assert "nvidia" not in COMPOSE_FILE.read_text(), "a device reservation fails `up` on a host without one"
    assert "deploy" not in worker
    # `--scale ray-worker=N` needs replicas without a fixed name or host port.
    assert "container_name" not in worker
    assert not worker.get("ports")


def test_compose_one_service_builds_the_image_the_others_run():
    """Several services building one tag each write an image of their own; a later `up` then recreates the
    containers whose image is no longer the tag's (a `--scale` would restart the whole cluster)."""
    services = _compose()["services"]
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["ray-head"], built
    image = services["ray-head"]["image"]
    assert {name for name, s in services.items() if s.get("image") == image} == {"mlflow", "ray-head", "ray-worker", "api"}


def test_compose_gpu_file_gives_workers_gpus_and_every_service_of_the_image_the_cuda_build():
    gpu = _gpu()["services"]
    devices = gpu["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices
    count = _resolve(str(devices[0].get("count", "")))
    assert count == "all" or count.isdigit(), f"GPU count {count!r}"
    cpu = _compose()["services"]
    image = cpu["ray-head"]["image"]
    users = {name for name, service in cpu.items() if service.get("image") == image}
    assert set(gpu) == users, f"the GPU file changes {set(gpu)}; the image runs in {users}"
    for name in users:
        assert _resolve(gpu[name]["image"]) == _resolve(image) + "-cuda", "the CUDA image must not replace the CPU one"
    assert [name for name, service in gpu.items() if "build" in service] == ["ray-head"]
    assert _resolve(gpu["ray-head"]["build"]["args"]["TORCH_INDEX_URL"]) == "https://pypi.org/simple"
    # The switch README.md and .env.example name, letter for letter.
    switch = "COMPOSE_FILE=docker-compose.yml:docker-compose.gpu.yml"
    assert f"# {switch}" in ENV_EXAMPLE.read_text() and switch in GPU_FILE.read_text()
    assert switch in _readme_with_docker()


def test_compose_ray_nodes_and_api_mount_the_shared_storage_at_one_path():
    services = _compose()["services"]
    mounts = {}
    for name in ("ray-head", "ray-worker", "api"):
        volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in services[name]["volumes"]]
        mounts[name] = {v.split(":")[1]: v.split(":")[0] for v in volumes}
        home = _env(services[name])["HPSEARCH_HOME"]
        assert any(home.startswith(target + "/") for target in mounts[name]), \
            f"{name}: HPSEARCH_HOME {home} is not on a mounted volume {mounts[name]}"
    shared = {(target, source) for target, source in mounts["ray-head"].items()}
    for name in ("ray-worker", "api"):
        assert shared & set(mounts[name].items()), f"{name} mounts {mounts[name]}, the head {mounts['ray-head']}"
    assert len({_env(services[name])["HPSEARCH_HOME"] for name in mounts}) == 1


def test_compose_every_service_has_a_healthcheck():
    services = _compose()["services"]
    without = [name for name in SERVICES if not (services[name].get("healthcheck") or {}).get("test")]
    assert not without, f"no healthcheck: {without}"


@pytest.mark.parametrize("name, needs", [
    ("mlflow", {"postgres"}),
    ("ray-worker", {"ray-head"}),
    ("api", {"postgres", "mlflow", "ray-head"}),
])
def test_compose_depends_on_waits_until_healthy(name, needs):
    depends_on = _compose()["services"][name].get("depends_on") or {}
    assert isinstance(depends_on, dict), f"{name}: depends_on as a list waits only for the start, not health"
    assert set(depends_on) >= needs, f"{name} depends on {set(depends_on)}, needs {needs}"
    for dependency, condition in depends_on.items():
        assert condition.get("condition") == "service_healthy", f"{name} -> {dependency}: {condition}"


def test_compose_has_no_literal_secrets():
    required_reference = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")  # no default value
    offending = []
    for name, service in _compose()["services"].items():
        for key, value in _env(service).items():
            if any(word in key.upper() for word in SECRET_WORDS) and not required_reference.match(value):
                offending.append(f"{name}: {key}={value}")
    for path, text in _strings(_compose()):
        for password in URL_PASSWORD.findall(text):
            if not required_reference.match(password):
                offending.append(f"{path}: a password in a URL")
    assert not offending, "secrets must come from .env as ${VAR:?message}: " + "; ".join(offending)


def test_compose_variables_are_documented_in_env_example():
    used = {match.group(1) for f in (COMPOSE_FILE, GPU_FILE) for match in REFERENCE.finditer(f.read_text())}
    documented = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert used - documented == set(), f"not in .env.example: {sorted(used - documented)}"
    assert documented - used == set(), f"in .env.example but unused by the compose files: {documented - used}"


def test_compose_env_example_holds_no_secret_values():
    values = dict(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    filled = [k for k, v in values.items() if any(w in k for w in SECRET_WORDS) and v.strip()]
    assert not filled, f".env.example sets secrets {filled}"


@pytest.mark.parametrize("role", ROLES)
def test_compose_role_commands_are_the_scripts_local_cluster_runs(role):
    service = _compose()["services"][role]
    command = _command(service)
    assert command[0] == IMAGE_SCRIPTS + role, f"{role} runs {command}, not its role script"
    script = CLUSTER_SCRIPTS / role
    assert script.is_file() and script.stat().st_mode & stat.S_IXUSR, f"{script} is missing or not executable"
    assert _local_cluster().ROLE_SCRIPTS[role] == script


@pytest.mark.parametrize("name", SERVICES)
def test_compose_healthchecks_use_files_that_exist(name):
    test = _compose()["services"][name]["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    if test[1].startswith(IMAGE_SCRIPTS):
        script = CLUSTER_SCRIPTS / test[1][len(IMAGE_SCRIPTS):]
        assert script.is_file() and script.stat().st_mode & stat.S_IXUSR, f"{script} is missing or not executable"


def test_compose_postgres_init_script_creates_the_second_database():
    postgres = _compose()["services"]["postgres"]
    init = [v for v in postgres["volumes"] if ":/docker-entrypoint-initdb.d/" in v]
    assert init, "no init script is mounted into /docker-entrypoint-initdb.d/"
    script = REPO / init[0].split(":")[0]
    assert script.is_file(), script
    env = _env(postgres)
    hpsearch_db = env.get("HPSEARCH_DB", "hpsearch")
    assert hpsearch_db != env["POSTGRES_DB"], "MLflow and Optuna both keep an alembic_version table"
    assert "CREATE DATABASE" in script.read_text()
    for name in ("ray-head", "api"):
        assert _env(_compose()["services"][name])["HPSEARCH_REGISTRY_URL"].endswith("/" + hpsearch_db)
    assert _env(_compose()["services"]["mlflow"])["MLFLOW_BACKEND_STORE_URI"].endswith("/" + env["POSTGRES_DB"])


def test_compose_mlflow_script_allows_the_compose_host_name(fake_tools):
    env = _env(_compose()["services"]["mlflow"])
    run = _run_role("mlflow", fake_tools, **{k: _resolve(v) for k, v in env.items()})
    assert run.returncode == 0, run.stderr
    argv = run.stdout.splitlines()
    allowed = _option(argv, "--allowed-hosts").split(",")
    assert {"mlflow:5000", "localhost:5000", "127.0.0.1:5000"} <= set(allowed), allowed
    assert "--serve-artifacts" in argv and _option(argv, "--artifacts-destination") == "/mlflow-artifacts"
    assert "--backend-store-uri" not in argv  # read from MLFLOW_BACKEND_STORE_URI, out of `ps`'s sight


def test_compose_ray_head_declares_no_resources_and_auth_on(fake_tools):
    env = {k: _resolve(v) for k, v in _env(_compose()["services"]["ray-head"]).items()}
    assert env["RAY_AUTH_MODE"] == "token"
    run = _run_role("ray-head", fake_tools, **env)
    assert run.returncode == 0, run.stderr
    argv = run.stdout.splitlines()
    assert argv[:2] == ["start", "--head"] and "--block" in argv
    assert (_option(argv, "--num-cpus"), _option(argv, "--num-gpus")) == ("0", "0")
    assert _option(argv, "--port") == "6379"
    assert _option(argv, "--dashboard-port") == "8265"  # HPSEARCH_RAY_DASHBOARD of the api
    assert _env(_compose()["services"]["api"])["HPSEARCH_RAY_DASHBOARD"] == "http://ray-head:8265"
    # The script's own defaults, for a head started with nothing but its token.
    bare = _run_role("ray-head", fake_tools, RAY_AUTH_TOKEN="t" * 64).stdout.splitlines()
    assert (_option(bare, "--num-cpus"), _option(bare, "--num-gpus")) == ("0", "0")


@pytest.mark.parametrize("role", ["ray-head", "ray-worker"])
def test_compose_ray_scripts_start_a_node_on_loopback_through_ray_start_loopback(role, fake_tools, tmp_path):
    """HPSEARCH_RAY_NODE_IP=127.0.0.1 (scripts/local-cluster) runs `ray start`'s arguments through
    ray-start-loopback with the Python beside `ray`; any other loopback form is refused (Ray would swap it for
    the machine's address), and so is a worker on loopback told to join a head that is not."""
    python = Path(fake_tools.split(os.pathsep)[0]) / "python"
    python.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    python.chmod(0o755)
    base = {"RAY_AUTH_TOKEN": "t" * 64, "HPSEARCH_RAY_HEAD_ADDRESS": "127.0.0.1:6379"}
    run = _run_role(role, fake_tools, **base, HPSEARCH_RAY_NODE_IP="127.0.0.1")
    assert run.returncode == 0, run.stderr
    argv = run.stdout.splitlines()
    assert argv[0] == str(CLUSTER_SCRIPTS / "ray-start-loopback") and _option(argv, "--node-ip-address") == "127.0.0.1"
    for other in ("localhost", "LOCALHOST", "::1", "::ffff:127.0.0.1", "127.0.1.1"):
        refused = _run_role(role, fake_tools, **base, HPSEARCH_RAY_NODE_IP=other)
        assert refused.returncode == 2 and "use 127.0.0.1" in refused.stderr and not refused.stdout, other
    if role == "ray-worker":
        apart = _run_role(role, fake_tools, **{**base, "HPSEARCH_RAY_HEAD_ADDRESS": "ray-head:6379"},
                          HPSEARCH_RAY_NODE_IP="127.0.0.1")
        assert apart.returncode == 2 and "joins a head on loopback" in apart.stderr and not apart.stdout
        named = _run_role(role, fake_tools, **{**base, "HPSEARCH_RAY_HEAD_ADDRESS": "LOCALHOST:6379"},
                          HPSEARCH_RAY_NODE_IP="127.0.0.1")  # a host name is a host name in any case
        assert named.returncode == 0 and _option(named.stdout.splitlines(), "--address") == "LOCALHOST:6379", named.stderr
    else:  # the dashboard stays on loopback too, unless told otherwise
        assert _option(argv, "--dashboard-host") == "127.0.0.1"
    # No Python beside `ray`, and `ray`'s first line names none (#!/bin/sh): refused, nothing run.
    python.unlink()
    unknown = _run_role(role, fake_tools, **base, HPSEARCH_RAY_NODE_IP="127.0.0.1")
    assert unknown.returncode == 2 and "cannot tell which Python" in unknown.stderr and not unknown.stdout


@pytest.mark.parametrize("role", ["ray-head", "ray-worker"])
def test_compose_ray_scripts_refuse_to_run_without_token_auth(role, fake_tools):
    base = {"HPSEARCH_RAY_HEAD_ADDRESS": "ray-head:6379"}
    no_token = _run_role(role, fake_tools, **base)
    auth_off = _run_role(role, fake_tools, **base, RAY_AUTH_MODE="disabled", RAY_AUTH_TOKEN="t" * 64)
    assert no_token.returncode == 2 and "token" in no_token.stderr
    assert auth_off.returncode == 2 and "RAY_AUTH_MODE" in auth_off.stderr
    assert not no_token.stdout and not auth_off.stdout  # `ray start` never ran


@pytest.mark.parametrize("role", ROLES)
def test_compose_role_scripts_keep_secrets_off_the_command_line(role, fake_tools):
    env = {k: _resolve(v) for k, v in _env(_compose()["services"][role]).items()}
    secrets = {"POSTGRES_PASSWORD": "pg-secret-1234", "HPSEARCH_RAY_TOKEN": "ray-secret-5678",
               "HPSEARCH_TOKEN": "api-secret-9012", "HPSEARCH_MLFLOW_PASSWORD": "mlflow-secret-3456"}
    env = {k: re.sub(r"<(\w+)>", lambda m: secrets.get(m.group(1), m.group(0)), v) for k, v in env.items()}
    run = _run_role(role, fake_tools, **env)
    assert run.returncode == 0, run.stderr
    leaked = [name for name, value in secrets.items() if value in run.stdout]
    assert not leaked, f"{role} puts {leaked} on its command line, where `ps` shows it"


# The Python ones: healthcheck (below) and ray-start-loopback (tests/test_ray.py runs it).
@pytest.mark.parametrize("script", sorted(f"cluster/{p.name}" for p in CLUSTER_SCRIPTS.iterdir()
                                          if p.name not in ("healthcheck", "ray-start-loopback"))
                         + ["postgres/create-hpsearch-db.sh"])
def test_compose_role_scripts_pass_bash_syntax_check(script):
    path = REPO / "scripts" / script
    assert path.read_text().startswith("#!/usr/bin/env bash\n"), f"{path} is not a bash script"
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_compose_healthcheck_script_is_valid_python():
    source = (CLUSTER_SCRIPTS / "healthcheck").read_text()
    compile(source, "healthcheck", "exec")
    run = subprocess.run([str(CLUSTER_SCRIPTS / "healthcheck"), "no-such-role"], capture_output=True, text=True)
    assert run.returncode == 2 and "usage" in run.stderr


def _stages() -> list[list[str]]:
    """The Dockerfile's stages, each a list of its instructions (comments and continuations folded)."""
    text = re.sub(r"\\\n(?:\s*#.*\n)*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_compose_dockerfile_installs_the_project_and_copies_the_scripts():
    stages = _stages()
    assert all(stage[0].startswith("FROM python:3.11-slim") for stage in stages), [s[0] for s in stages]
    final = stages[-1]
    assert "WORKDIR /app" in final  # the compose commands name /app/scripts/cluster/...
    assert any(re.match(r"COPY scripts/? scripts/?$", line) for line in final)
    assert any(re.match(r"ARG TORCH_SPEC=", line) for stage in stages for line in stage)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image runs as root"


def test_compose_dockerfile_installs_dependencies_apart_from_the_code_and_the_project_last():
    """A code change must not reinstall the dependencies: they are installed in a stage that sees only
    the dependency list, and the project goes in last, without dependencies and without the network."""
    *earlier, final = _stages()
    for stage in earlier:
        copies = [line for line in stage if line.startswith("COPY ")]
        for line in copies:
            assert "--from=" in line or set(line.split()[1:-1]) <= {"pyproject.toml", "constraints.txt"}, f"{stage[0]}: {line}"
    assert any(re.search(r"pip install -c /tmp/pins.txt -r ", line) for stage in earlier for line in stage)
    installs = [i for i, line in enumerate(final) if "pip install" in line]
    assert len(installs) == 1, final
    install = final[installs[0]]
    assert "--no-deps" in install and "--no-build-isolation" in install
    assert re.search(r"pip install( --[a-z-]+)* \.(\s|$)", install), f"not the project itself: {install}"
    code = [i for i, line in enumerate(final) if re.match(r"COPY (service|trainables)/", line)]
    venv = [i for i, line in enumerate(final) if line.startswith("COPY --from=")]
    assert venv and code and max(venv) < min(code) < installs[0], "dependencies, then code, then the project"
    # The cluster extra (PostgreSQL's driver) is among the dependencies the deps stage installs.
    requirements = " ".join(line for stage in earlier for line in stage)
    assert "'optional-dependencies']['cluster']" in requirements


def test_compose_ray_object_store_and_shm_come_from_one_variable(fake_tools):
    services = _compose()["services"]
    for name in ("ray-head", "ray-worker"):
        assert services[name]["shm_size"] == "${HPSEARCH_RAY_SHM_SIZE:-1gb}", services[name].get("shm_size")
        assert _env(services[name])["HPSEARCH_RAY_OBJECT_STORE_MEMORY"] == "90%"
    # The role script turns the share into bytes of the /dev/shm it finds (here, this machine's).
    env = {k: _resolve(v) for k, v in _env(services["ray-worker"]).items()}
    argv = _run_role("ray-worker", fake_tools, **env).stdout.splitlines()
    shm = os.statvfs("/dev/shm")
    assert int(_option(argv, "--object-store-memory")) == shm.f_blocks * shm.f_frsize * 90 // 100


@pytest.mark.parametrize("value", ["0%", "101%", "lots", "1.5g"])
@pytest.mark.parametrize("role", ["ray-head", "ray-worker"])
def test_compose_ray_scripts_refuse_an_object_store_size_they_cannot_read(role, value, fake_tools):
    run = _run_role(role, fake_tools, RAY_AUTH_TOKEN="t" * 64, HPSEARCH_RAY_HEAD_ADDRESS="ray-head:6379",
                    HPSEARCH_RAY_OBJECT_STORE_MEMORY=value)
    assert run.returncode == 2 and f"'{value}'" in run.stderr and not run.stdout
    assert len(run.stderr.strip().splitlines()) == 1


def test_compose_every_service_has_a_memory_limit_set_in_env():
    documented = dict(re.findall(r"^([A-Z_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    for name, service in _compose()["services"].items():
        match = re.fullmatch(r"\$\{(HPSEARCH_[A-Z_]+_MEMORY):-([0-9]+[bkmg])\}", str(service.get("mem_limit")))
        assert match, f"{name}: mem_limit {service.get('mem_limit')!r}"
        assert documented[match.group(1)] == match.group(2), f"{match.group(1)}: .env.example and the default differ"
    # A worker's /dev/shm counts towards its limit: the default limit must leave room for its trials.
    worker = _compose()["services"]["ray-worker"]
    assert _bytes(_resolve(worker["mem_limit"])) >= 3 * _bytes(_resolve(worker["shm_size"]))


@pytest.mark.parametrize("name, at_least", [("postgres", 60), ("mlflow", 240), ("ray-head", 240),
                                            ("ray-worker", 240), ("api", 120)])
def test_compose_healthchecks_wait_out_a_slow_first_start(name, at_least):
    """A first start on a loaded 2-core host took 140 s for MLflow (its schema) and timed Ray out: failures
    in the start period do not count, and the first success ends it, so a long one costs nothing."""
    check = _compose()["services"][name]["healthcheck"]
    assert _seconds(check["start_period"]) >= at_least
    assert _seconds(check["interval"]) * int(check["retries"]) >= 30, "a healthy service must survive a hiccup"


def test_compose_ray_start_waits_hold_on_a_busy_host():
    for name in ("ray-head", "ray-worker"):
        env = _env(_compose()["services"][name])
        assert int(env["RAY_gcs_server_port_wait_time_s"]) >= 120
        assert int(env["RAY_DASHBOARD_STARTUP_TIMEOUT_S"]) >= 120


def test_compose_override_file_is_ignored_by_git():
    check = subprocess.run(["git", "check-ignore", "-q", "docker-compose.override.yml"], cwd=REPO)
    assert check.returncode == 0, "docker-compose.override.yml, where users put local changes, is not ignored"


# --------------------------------------------------------------------------------------------------------------
# README.md's "With Docker" is what the compose stage (tests/compose) runs


def _readme_with_docker() -> str:
    return README.read_text().split("### With Docker", 1)[1].split("\n### ", 1)[0]


def _compose_stage():
    sys.path.insert(0, str(REPO / "tests" / "compose"))
    try:
        import _cluster
        import _engine
    finally:
        sys.path.pop(0)
    return _cluster, _engine


def test_readme_with_docker_shows_the_commands_the_compose_stage_runs():
    cluster, _ = _compose_stage()
    block = cluster.readme_docker_block()
    missing = [command for command in cluster.README_COMMANDS if command not in block]
    assert not missing, f"README.md's With Docker block lacks {missing}"
    # Nothing in the block that the stage does not run: each line is one of its commands (or part of one).
    for line in block.splitlines():
        command = line.split("  #")[0].strip()
        assert any(command in run for run in cluster.README_COMMANDS), f"README runs {command!r}, the test does not"


def test_readme_with_docker_states_the_minimum_compose_version_the_stage_requires():
    _, engine = _compose_stage()
    version = ".".join(map(str, engine.MIN_COMPOSE[:2]))
    assert f"Docker Compose v{version} or later" in _readme_with_docker()
    assert f"Docker Compose v{version} or later" in COMPOSE_FILE.read_text()
    assert f"Docker Compose v{version} or later" in ENV_EXAMPLE.read_text()


def test_readme_with_docker_names_every_sizing_variable():
    sizing = [name for name in re.findall(r"^([A-Z_]+)=", ENV_EXAMPLE.read_text(), re.M)
              if name.endswith(("_MEMORY", "_SHM_SIZE"))]
    assert sizing and all(f"`{name}`" in _readme_with_docker() for name in sizing), sizing


@pytest.mark.parametrize("docker_cli", [True, False])
def test_compose_stage_skips_with_its_reason_where_docker_cannot_run(docker_cli, monkeypatch, tmp_path):
    """Not root and no engine running: the stage cannot start one, and says so (pytest skips with this)."""
    _, engine = _compose_stage()
    monkeypatch.setattr(engine, "_server_version", lambda env: "")
    monkeypatch.setattr(engine, "_which", lambda name: f"/usr/bin/{name}" if docker_cli and name == "docker" else None)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    with pytest.raises(engine.EngineUnavailable) as raised:
        engine.Engine.acquire(cache=tmp_path)
    assert "root" in str(raised.value) and "\n" not in str(raised.value)
