"""Connecting to Ray: the one private Ray API hpsearch uses, and the address checks that answer in seconds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service._errors import StudyError
from service._ray import check_reachable


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


@pytest.mark.parametrize("address, message", [
    ("head-without-port", "is not HOST:PORT"),
    ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
])
def test_ray_bad_addresses_are_one_line_user_errors(address, message):
    with pytest.raises(StudyError, match=message) as caught:
        check_reachable(address, timeout_s=2)
    assert "\n" not in str(caught.value)
