"""Connecting to Ray: the two private Ray names hpsearch uses, and the address checks that answer in seconds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service._errors import StudyError
from service._ray import check_reachable, loopback_node


def test_ray_private_token_helper_still_does_what_we_rely_on(tmp_path):
    """`present_cluster_token` calls Ray's private `maybe_enable_token_auth_if_token_available` (checked against
    Ray 2.60.0). If Ray moves or changes it, this fails loudly: with a token available and RAY_AUTH_MODE unset,
    the process must end up in token mode."""
    code = ("import os; from service._ray import present_cluster_token; present_cluster_token(); "
            "print(os.environ.get('RAY_AUTH_MODE'))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_TOKEN="x" * 32, HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "token"


def test_ray_private_single_machine_switch_still_keeps_a_node_on_loopback():
    """`loopback_node` sets Ray's private `ray_constants.ENABLE_RAY_CLUSTER` (checked against Ray 2.60.0), which
    Ray's own choice of a node's address consults; if Ray moves it, this fails loudly. Afterwards both the
    constant and the environment are as they were."""
    from ray._private import ray_constants, services

    before = (ray_constants.ENABLE_RAY_CLUSTER, os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"))
    with loopback_node():
        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
        assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert (ray_constants.ENABLE_RAY_CLUSTER, os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")) == before


@pytest.mark.parametrize("address, message", [
    ("head-without-port", "is not HOST:PORT"),
    ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
])
def test_ray_bad_addresses_are_one_line_user_errors(address, message):
    with pytest.raises(StudyError, match=message) as caught:
        check_reachable(address, timeout_s=2)
    assert "\n" not in str(caught.value)
