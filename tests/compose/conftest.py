"""The compose stage's fixtures: a Docker Engine (ours, or the one running here), the two base images, and a
user's checkout with its .env. `make test-compose` runs this stage; plain `pytest` skips it, since it builds
images and starts real containers (10-30 min from cold on 2 cores)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import Checkout, harness_override  # noqa: E402
from _engine import Engine, EngineUnavailable, _alive, _mounts_under, log  # noqa: E402
from _images import WheelServer, base_images, local_wheels_dir  # noqa: E402

STAGE_VARIABLE = "HPSEARCH_COMPOSE_STAGE"


def pytest_collection_modifyitems(config, items):
    if os.environ.get(STAGE_VARIABLE) == "1":
        return
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason="the compose stage (a real Docker Engine and containers) runs with "
                                   "`make test-compose`")
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def engine():
    try:
        engine = Engine.acquire()
    except EngineUnavailable as e:
        log(f"SKIPPED: Docker cannot run on this machine: {e}")
        pytest.skip(f"Docker cannot run on this machine: {e}")
    log(f"engine: Docker {engine.server_version}, Compose {engine.compose_version}")
    yield engine
    pid, exec_root = engine.pid, engine.exec_root
    problems = engine.release()
    if engine.started:
        assert not _alive(pid), f"dockerd (pid {pid}) is still running"
        assert not _mounts_under(exec_root), f"left mounted: {_mounts_under(exec_root)}"
        assert not exec_root.exists(), f"{exec_root} is still there"
    assert not problems, problems


@pytest.fixture(scope="session")
def images(engine):
    """{image: 'pulled' | 'stand-in'}; while the session runs, the host's local wheels are served to builds."""
    wheels = local_wheels_dir()
    if wheels is None:
        yield base_images(engine), False
        return
    with WheelServer(wheels):
        yield base_images(engine), True


@pytest.fixture(scope="session")
def checkout(engine, images):
    origin, wheels_served = images
    override = harness_override(engine, origin, wheels_served)
    log(f"base images: {json.dumps(origin)}; override: {json.dumps(override)}")
    checkout = Checkout.make(engine, override)
    checkout.make_env()
    # A run that was killed may have left the project's containers and volumes on a cached engine.
    checkout.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False, timeout=300)
    yield checkout
    log(f"timings (s): {json.dumps(checkout.timings)}")
    checkout.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False, timeout=300)
    checkout.remove()
    if engine.started:
        # Superseded images of earlier builds; the current ones and their layers stay in the cache.
        engine.docker("image", "prune", "--force", check=False, timeout=300)


@pytest.fixture(scope="session")
def state():
    """What one step of the user's session leaves for the next (study ids, run ids)."""
    return {}
