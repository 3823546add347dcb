"""The compose cluster on a real Docker Engine: image size, build and code-change rebuild time, time to
all-healthy.

    python benchmarks/compose.py [--runs 3] [--load 0] [--cold] [--dockerfile-from REF] [--build-only]

The same engine, base images and user checkout as the compose stage (tests/compose: an engine of its own when
none runs here, local stand-ins for python:3.11-slim and postgres:17 where the public registry cannot be
reached). Then:
  build         `docker compose build`; with --cold after removing the hpsearch image and the build cache
                (the base images stay), else whatever the engine has cached
  image         the size of hpsearch:latest and of its base image
  rebuild       `docker compose build` after a one-line change to service/__init__.py, --runs times
  up            `docker compose up -d --wait` from empty volumes (MLflow creates its schema, PostgreSQL its
                databases) until all five services are healthy, --runs times, `down -v` between
  restart       `docker compose down` then `up -d --wait` with the volumes kept, --runs times
--load N keeps N busy-looping processes running during the `up` and `restart` runs (a loaded host).
--dockerfile-from REF measures the Dockerfile of a git ref instead of the working tree's (a before/after);
--build-only stops after the rebuilds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "compose"))

from _cluster import UP, Checkout, harness_override  # noqa: E402
from _engine import Engine, log  # noqa: E402
from _images import WheelServer, base_images, local_wheels_dir  # noqa: E402


def _timed(checkout: Checkout, *args: str, timeout: float = 3600) -> float:
    t0 = time.monotonic()
    checkout.compose(*args, timeout=timeout)
    return round(time.monotonic() - t0, 1)


def _size(engine: Engine, image: str) -> int:
    return int(engine.docker("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "all": values}


class _Load:
    """N processes that spin until ended, by pid."""

    def __init__(self, n: int):
        self.n, self.processes = n, []

    def __enter__(self):
        self.processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.processes:
            p.kill()
            p.wait()


def measure(checkout: Checkout, args) -> dict:
    engine = checkout.engine
    result: dict = {"engine": engine.server_version, "compose": engine.compose_version, "load": args.load,
                    "dockerfile": args.dockerfile_from or "working tree"}
    if args.dockerfile_from:
        dockerfile = subprocess.run(["git", "show", f"{args.dockerfile_from}:Dockerfile"], cwd=REPO,
                                    check=True, capture_output=True, text=True).stdout
        (checkout.dir / "Dockerfile").write_text(dockerfile)
    if args.cold:
        engine.docker("image", "rm", "--force", "hpsearch:latest", check=False)
        engine.docker("builder", "prune", "--all", "--force", check=False, timeout=600)
        engine.docker("image", "prune", "--force", check=False, timeout=600)
    result["build_s"] = _timed(checkout, "build")
    result["build_cold"] = args.cold
    result["image_bytes"] = _size(engine, "hpsearch:latest")
    result["base_image_bytes"] = _size(engine, "python:3.11-slim")

    init = checkout.dir / "service" / "__init__.py"
    original = init.read_text()
    rebuilds = []
    for i in range(args.runs):
        init.write_text(original + f"\n# benchmark change {time.time_ns()}\n")
        rebuilds.append(_timed(checkout, "build"))
        log(f"rebuild {i + 1} after a code change: {rebuilds[-1]} s")
    init.write_text(original)
    result["code_change_rebuild_s"] = _spread(rebuilds)
    checkout.compose("build", timeout=3600)
    if args.build_only:
        return result

    ups, restarts = [], []
    with _Load(args.load):
        for i in range(args.runs):
            checkout.compose("down", "--volumes", "--timeout", "10", timeout=600)
            ups.append(_timed(checkout, "up", "-d", "--wait", timeout=1800))
            log(f"up {i + 1}: {ups[-1]} s to all healthy")
        for i in range(args.runs):
            checkout.compose("down", "--timeout", "10", timeout=600)
            restarts.append(_timed(checkout, "up", "-d", "--wait", timeout=1800))
            log(f"restart {i + 1}: {restarts[-1]} s to all healthy")
    result["up_to_all_healthy_s"] = _spread(ups)
    result["restart_to_all_healthy_s"] = _spread(restarts)
    checkout.compose("down", "--volumes", "--timeout", "10", timeout=600)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each timed step (default: 3)")
    parser.add_argument("--load", type=int, default=0, help="busy processes during the up runs (default: 0)")
    parser.add_argument("--cold", action="store_true", help="build without the image and build cache")
    parser.add_argument("--dockerfile-from", metavar="REF", help="measure the Dockerfile of this git ref")
    parser.add_argument("--build-only", action="store_true", help="image size and build times only")
    args = parser.parse_args()
    assert UP == "docker compose up -d --wait"  # what README.md runs; the timed `up` is the same command

    engine = Engine.acquire()
    checkout = None
    try:
        wheels = local_wheels_dir()
        server = WheelServer(wheels) if wheels else None
        if server:
            server.__enter__()
        try:
            origin = base_images(engine)
            checkout = Checkout.make(engine, harness_override(engine, origin, server is not None))
            checkout.make_env()
            checkout.compose("down", "--volumes", "--remove-orphans", check=False, timeout=600)
            result = measure(checkout, args)
            result["base_images"] = origin
        finally:
            if server:
                server.__exit__(None, None, None)
    finally:
        if checkout is not None:
            checkout.compose("down", "--volumes", "--remove-orphans", check=False, timeout=600)
            checkout.remove()
        problems = engine.release()
        if problems:
            log(f"engine clean-up: {problems}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
