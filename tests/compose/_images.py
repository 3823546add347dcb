"""The two public base images the product needs (python:3.11-slim for the Dockerfile, postgres:17 for
docker-compose.yml): pulled where the public registry answers, otherwise local stand-ins built from
Debian's packages (tests/compose/standins/), tagged with the same names so the product's files are used
unchanged.

A stand-in starts from a Debian bookworm rootfs made with debootstrap from the host's Debian mirror. The
Python stand-in's pip trusts the host's CA bundle and, while the harness builds, also finds the host's local
wheels (the folder in PIP_FIND_LINKS, holding the CPU build of torch) through a small HTTP server on
127.0.0.1 that the harness runs: so no multi-GB CUDA wheel is downloaded, and no wheel is baked into an image.
"""

from __future__ import annotations

import configparser
import functools
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

from _engine import Engine, _which, apt_install, log

STANDINS = Path(__file__).resolve().parent / "standins"
DEBIAN_BASE = "hpsearch-standin/debian:bookworm"
STANDIN_LABEL = "org.hpsearch.standin"
# Fixed: it is baked into the Python stand-in (PIP_FIND_LINKS); another port rebuilds the stand-in and so every
# layer of the image above it.
WHEELS_PORT = int(os.environ.get("HPSEARCH_COMPOSE_WHEELS_PORT", "38765"))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PUBLIC = {"python:3.11-slim": "python.Dockerfile", "postgres:17": "postgres.Dockerfile"}


def _label(engine: Engine, image: str) -> Optional[str]:
    run = engine.docker("image", "inspect", "--format", "{{index .Config.Labels \"%s\"}}" % STANDIN_LABEL, image,
                        check=False, timeout=60)
    if run.returncode != 0:
        return None
    return run.stdout.strip().replace("<no value>", "")


def _debian_mirror() -> str:
    """The host's Debian mirror, as apt is configured here (deb822 or one-line format)."""
    sources = [Path("/etc/apt/sources.list.d/debian.sources"), *Path("/etc/apt/sources.list.d").glob("*.sources")]
    for path in sources:
        if path.exists():
            for block in path.read_text().split("\n\n"):
                if re.search(r"^Suites:.*\b(bookworm|trixie|bullseye)\b(?!-)", block, re.M):
                    match = re.search(r"^URIs:\s*(\S+)", block, re.M)
                    if match:
                        return match.group(1)
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if path.exists():
            match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", path.read_text(), re.M)
            if match:
                return match.group(1)
    return "http://deb.debian.org/debian"


def _debian_base(engine: Engine) -> None:
    if engine.docker("image", "inspect", DEBIAN_BASE, check=False, timeout=60).returncode == 0:
        return
    if not _which("debootstrap"):
        apt_install("debootstrap")
    mirror = _debian_mirror()
    log(f"making a Debian bookworm rootfs with debootstrap from {mirror} (about 2 min)")
    with tempfile.TemporaryDirectory(prefix="hpsearch-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
                             capture_output=True, text=True, timeout=1200)
        if run.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        # What the real images set and a bare rootfs lacks: later `ENV PATH=...:$PATH` lines build on it.
        imported = subprocess.run(["docker", "import", "--change", f"ENV PATH={DEFAULT_PATH}", "--change",
                                   "ENV LANG=C.UTF-8", "-", DEBIAN_BASE], stdin=tar.stdout, env=engine.env,
                                  capture_output=True, text=True, timeout=600)
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr[-2000:]}")


def local_wheels_dir() -> Optional[Path]:
    """The host's local wheel folder when it holds a torch wheel (PIP_FIND_LINKS or pip's config)."""
    candidates = os.environ.get("PIP_FIND_LINKS", "").split()
    for conf in ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", os.path.expanduser("~/.config/pip/pip.conf")):
        parser = configparser.ConfigParser()
        try:
            parser.read(conf)
        except configparser.Error:
            continue
        candidates += parser.get("global", "find-links", fallback="").split()
    for candidate in candidates:
        path = Path(candidate.removeprefix("file://"))
        if path.is_dir() and any(path.glob("torch-*.whl")):
            return path
    return None


def _ca_bundle() -> Path:
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RuntimeError("no CA bundle found for the Python stand-in (PIP_CERT or /etc/ssl/certs)")


def _build_standin(engine: Engine, name: str, dockerfile: str, wheels: bool) -> None:
    _debian_base(engine)
    with tempfile.TemporaryDirectory(prefix="hpsearch-standin-") as tmp:
        context = Path(tmp)
        shutil.copy2(STANDINS / dockerfile, context / "Dockerfile")
        shutil.copy2(STANDINS / "postgres-entrypoint.sh", context / "postgres-entrypoint.sh")
        shutil.copy2(_ca_bundle(), context / "ca-certificates.crt")
        args = ["build", "--network", "host", "--build-arg", f"BASE={DEBIAN_BASE}", "--tag", name]
        if wheels:
            args += ["--build-arg", f"FIND_LINKS=http://127.0.0.1:{WHEELS_PORT}/"]
        log(f"building the stand-in for {name}")
        engine.docker(*args, str(context), timeout=1800, env={"DOCKER_BUILDKIT": "0"})


def base_images(engine: Engine) -> dict[str, str]:
    """Make python:3.11-slim and postgres:17 available; {name: 'pulled' | 'stand-in'}."""
    wheels = local_wheels_dir() is not None
    origin = {}
    for name, dockerfile in PUBLIC.items():
        pulled = engine.docker("pull", "--quiet", name, check=False, timeout=900)
        if pulled.returncode == 0 and not _label(engine, name):
            origin[name] = "pulled"
            continue
        if _label(engine, name) == "":  # the real image, pulled by an earlier run
            origin[name] = "pulled earlier"
            continue
        first_line = (pulled.stderr.strip().splitlines() or ["?"])[-1]
        log(f"cannot pull {name} ({first_line[:160]}): using a local stand-in")
        _build_standin(engine, name, dockerfile, wheels and name.startswith("python"))
        origin[name] = "stand-in"
    return origin


class WheelServer:
    """The host's local wheels over HTTP on 127.0.0.1:WHEELS_PORT, for the Python stand-in's pip in builds."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        try:
            self._server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELS_PORT), handler)
        except OSError as e:
            raise RuntimeError(f"cannot serve the local wheels on 127.0.0.1:{WHEELS_PORT} ({e.strerror}); free "
                               "that port or set HPSEARCH_COMPOSE_WHEELS_PORT to another") from None
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.directory = directory

    def __enter__(self) -> "WheelServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass
