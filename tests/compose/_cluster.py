"""A user's checkout of the project and the `docker compose` commands README.md ("With Docker") gives them.

`Checkout.make()` copies the files git tracks (and new files not ignored) into a fresh folder, as a clone
would have them: the build context and the compose project are that folder, never the developer's tree (their
.env and override file stay untouched). The README's commands run there through bash, word for word; what the
harness adds for its own engine goes into that folder's docker-compose.override.yml (compose reads it by
itself), never into the product's files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from _engine import Engine, log

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PROJECT = "hpsearch"  # the compose file's `name:`
IMAGE_SERVICES = ("mlflow", "ray-head", "ray-worker", "api")  # the services that run the hpsearch image
SERVICES = ("postgres", "mlflow", "ray-head", "ray-worker", "api")

# The README's commands, as the test and the benchmark run them (test_readme_... checks each is there).
FILL_SECRETS = """\
for name in POSTGRES_PASSWORD HPSEARCH_TOKEN HPSEARCH_RAY_TOKEN HPSEARCH_MLFLOW_PASSWORD; do
  sed -i "s/^$name=\\$/$name=$(python3 -c 'import secrets; print(secrets.token_hex(32))')/" .env
done"""
COPY_ENV = "cp .env.example .env"
UP_BUILD = "docker compose up -d --build --wait"
CLIENT_ENV = "export HPSEARCH_SERVER=http://127.0.0.1:8000 HPSEARCH_TOKEN=$(sed -n 's/^HPSEARCH_TOKEN=//p' .env)"
SUBMIT_SMALL = "hpsearch submit search_spaces/digits_cnn.yaml --wait --set budget.trials=4 --set budget.max_epochs=2"
SCALE_2 = "docker compose up -d --wait --scale ray-worker=2"
DOWN = "docker compose down"
UP = "docker compose up -d --wait"
DOWN_VOLUMES = "docker compose down -v"
README_COMMANDS = (COPY_ENV, FILL_SECRETS, UP_BUILD, CLIENT_ENV, SUBMIT_SMALL, SCALE_2, DOWN, UP, DOWN_VOLUMES)


def harness_override(engine: Engine, origin: dict, wheels_served: bool) -> Optional[dict]:
    """What this engine needs beyond the product's files, as a docker-compose.override.yml (None: nothing)."""
    build: dict = {}
    if engine.builds_need_host_network:
        build["network"] = "host"  # our engine has no NAT bridge: build steps use the host's network
    if origin.get("python:3.11-slim") == "stand-in" and wheels_served:
        # PyTorch's CPU index is out of reach here: torch==2.13.0 from PyPI plus the host's local CPU wheel,
        # which pip prefers (2.13.0+cpu sorts above 2.13.0).
        build["args"] = {"TORCH_INDEX_URL": ""}
    if not build:
        return None
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return {"services": {name: {"build": build} for name, service in services.items() if "build" in service}}


def readme_docker_block() -> str:
    """The first ```bash block of README.md's "### With Docker" section."""
    text = README.read_text()
    section = text.split("### With Docker", 1)[1].split("\n### ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "README.md's \"With Docker\" section has no ```bash block"
    return match.group(1)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Checkout:
    engine: Engine
    root: Path  # the temporary folder holding the checkout
    dir: Path  # the checkout: the compose project's folder and build context
    api_port: int = 8000
    mlflow_port: int = 5000
    timings: dict = field(default_factory=dict)

    @classmethod
    def make(cls, engine: Engine, override: Optional[dict] = None) -> "Checkout":
        root = Path(tempfile.mkdtemp(prefix="hpsearch-compose-"))
        dest = root / "hpsearch"
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
        for name in filter(None, listed):
            src = REPO / name
            if src.is_file():  # tracked files deleted in the working tree are skipped
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
        checkout = cls(engine=engine, root=root, dir=dest)
        if override:
            (dest / "docker-compose.override.yml").write_text(
                "# Written by tests/compose for the engine it runs on; not part of the product.\n"
                + yaml.safe_dump(override, sort_keys=False))
        return checkout

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # ---------------------------------------------------------------------------------------------------------

    def env(self) -> dict:
        """The user's shell: the engine's DOCKER_HOST, the project's venv on PATH, none of our own settings
        (compose takes a variable from the shell over .env)."""
        env = {k: v for k, v in self.engine.env.items()
               if not k.startswith(("HPSEARCH_", "RAY_", "MLFLOW_", "POSTGRES_", "TORCH_", "PG", "COMPOSE_"))}
        env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def sh(self, script: str, timeout: float = 600, check: bool = True, what: str = "") -> subprocess.CompletedProcess:
        """Run `script` with bash in the checkout, as the user types it; timed under `what`."""
        t0 = time.monotonic()
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.dir, env=self.env(),
                             capture_output=True, text=True, timeout=timeout)
        elapsed = time.monotonic() - t0
        if what:
            self.timings[what] = round(elapsed, 1)
        shown = script.splitlines()[-1] if script.startswith("export ") else script.splitlines()[0]
        log(f"{shown[:120]}  ({elapsed:.1f} s, exit {run.returncode})")
        if check and run.returncode != 0:
            raise AssertionError(f"`{script}` exited {run.returncode}\n--- stdout\n{run.stdout[-4000:]}"
                                 f"\n--- stderr\n{run.stderr[-6000:]}\n{self.diagnose()}")
        return run

    def diagnose(self) -> str:
        """The containers' states and the last lines each service printed (they print no secrets)."""
        ps = self.compose("ps", "--all", check=False, timeout=120)
        logs = self.compose("logs", "--no-color", "--tail", "40", check=False, timeout=120)
        return f"--- docker compose ps\n{ps.stdout}{ps.stderr}\n--- docker compose logs --tail 40\n{logs.stdout[-12000:]}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        return self.engine.docker("compose", *args, cwd=self.dir, env=self.env(), timeout=timeout, check=check)

    def make_env(self) -> dict:
        """`cp .env.example .env` and the secrets loop, word for word; other ports where ours are taken."""
        self.sh(COPY_ENV)
        self.sh(FILL_SECRETS)
        env_file = self.dir / ".env"
        text = env_file.read_text()
        # Another program on this machine may hold 8000 or 5000; then the documented port variables move us.
        if not _port_free(8000):
            self.api_port = _free_port()
            text = re.sub(r"^HPSEARCH_API_PORT=.*$", f"HPSEARCH_API_PORT={self.api_port}", text, flags=re.M)
        if not _port_free(5000):
            self.mlflow_port = _free_port()
            text = re.sub(r"^HPSEARCH_MLFLOW_PORT=.*$", f"HPSEARCH_MLFLOW_PORT={self.mlflow_port}", text, flags=re.M)
        if (self.api_port, self.mlflow_port) != (8000, 5000):
            log(f"8000 or 5000 is taken on this host: API on {self.api_port}, MLflow on {self.mlflow_port}")
        env_file.write_text(text)
        return dict(re.findall(r"^([A-Z_]+)=(.*)$", text, re.M))

    def client_env_line(self) -> str:
        return CLIENT_ENV.replace(":8000", f":{self.api_port}")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    # ---------------------------------------------------------------------------------------------------------

    def ps(self) -> list[dict]:
        """`docker compose ps --all` as a list of containers."""
        out = self.compose("ps", "--all", "--format", "json", timeout=120).stdout.strip()
        if not out:
            return []
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def inspect(self, container_ids: list[str]) -> list[dict]:
        if not container_ids:
            return []
        return json.loads(self.engine.docker("inspect", *container_ids, timeout=120).stdout)

    def container_ip(self, info: dict) -> str:
        networks = info["NetworkSettings"]["Networks"]
        return next(iter(networks.values()))["IPAddress"]

    def ray_nodes(self) -> list[dict]:
        """Ray's view of the cluster, asked from inside the head (the only place with its token and port)."""
        code = ("import json, ray; ray.init(address='auto', log_to_driver=False, logging_level='ERROR'); "
                "print(json.dumps([n for n in ray.nodes() if n['Alive']]))")
        run = self.compose("exec", "-T", "ray-head", "python", "-c", code, timeout=180)
        return json.loads(run.stdout.strip().splitlines()[-1])
