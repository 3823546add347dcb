"""Connecting to Ray: the private Ray names hpsearch and its cluster scripts use, and the address checks that answer in seconds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service._errors import StudyError
from service._ray import check_reachable, head_on_loopback_only, loopback_node


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


@pytest.mark.slow  # seconds, not milliseconds
def test_ray_private_names_of_ray_start_loopback_still_keep_a_cluster_node_on_loopback():
    """scripts/cluster/ray-start-loopback (local-cluster's nodes) sets Ray's private
    `ray_constants.ENABLE_RAY_CLUSTER` and replaces `services.get_node_ip_address` (checked against Ray 2.60.0).
    After its set-up, in a process of its own: `ray start` would let a worker node join (the constant), Ray
    keeps a node given 127.0.0.1 on it (what `--node-ip-address` and `--address` go through), the node's
    processes inherit the switch, and `ray start` is still a command of Ray's CLI that asks for addresses through
    the `services` module. If Ray moves any of these,
    this fails loudly (and local-cluster's nodes would come up on the machine's address, which
    tests/test_security_e2e.py would see)."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "cluster" / "ray-start-loopback"
    code = ("import os, runpy; from ray._private import ray_constants; "
            # The constant the script sets must be Ray's own, not a new name it would create.
            "assert 'ENABLE_RAY_CLUSTER' in vars(ray_constants); "
            "runpy.run_path(os.environ['SCRIPT'], run_name='setup_only'); "
            "from ray._private import ray_constants, services; from ray.scripts.scripts import cli; "
            "print(ray_constants.ENABLE_RAY_CLUSTER, services.resolve_ip_for_localhost('127.0.0.1'), "
            "services.get_node_ip_address('10.0.0.1:6379'), os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'], "
            "'start' in cli.commands); "
            # `ray start` asks through the module, where the script's replacement is found.
            "import inspect; src = inspect.getsource(cli.commands['start'].callback); "
            "print('services.resolve_ip_for_localhost(' in src, 'services.get_node_ip_address(' in src, "
            "'ray_constants.ENABLE_RAY_CLUSTER' in src)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["SCRIPT"] = str(script)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "127.0.0.1", "127.0.0.1", "0", "True", "True", "True", "True"]


def _machine_address() -> str:
    """The address Ray would take as this machine's (the interface of the default route)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("8.8.8.8", 53))  # picks the outgoing interface; a UDP connect sends nothing
            address = probe.getsockname()[0]
    except OSError:
        address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("this machine has no route beside loopback: Ray would take loopback here by itself")
    return address


def _listen(host: str, port: int = 0) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((host, port))
    server.listen()
    return server


def _loopback_head_and_squatter(machine: str) -> tuple[socket.socket, socket.socket]:
    """A listener on 127.0.0.1 and one on the machine's address at the same port (a few ports tried: the
    machine's address may have one of them taken)."""
    for _ in range(5):
        head = _listen("127.0.0.1")
        try:
            return head, _listen(machine, head.getsockname()[1])
        except OSError:
            head.close()
    raise AssertionError("no port free on both 127.0.0.1 and the machine's address")


def test_ray_a_head_listening_on_loopback_itself_is_joined_on_loopback_even_beside_a_squatter():
    """A head whose GCS listens on 127.0.0.1 itself (local-cluster's nodes) is joined on loopback, and stays so
    when someone else listens on the machine's address at the same port: Ray would otherwise swap 127.0.0.1
    for that address and hand the squatter the driver's calls, token included."""
    with _listen("127.0.0.1") as head:
        port = head.getsockname()[1]
        assert head_on_loopback_only(f"127.0.0.1:{port}") and head_on_loopback_only(f"localhost:{port}")
    # As Ray's GCS listens: a dual-stack (IPv6) socket bound to 127.0.0.1, which the kernel lists in tcp6 as
    # ::ffff:127.0.0.1.
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as head:
        head.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        head.bind(("::ffff:127.0.0.1", 0))
        head.listen()
        assert head_on_loopback_only(f"127.0.0.1:{head.getsockname()[1]}")
    head, squatter = _loopback_head_and_squatter(_machine_address())
    with head, squatter:
        assert head_on_loopback_only(f"127.0.0.1:{head.getsockname()[1]}")


def test_ray_a_head_on_every_interface_or_elsewhere_is_left_to_ray():
    """A head bound to every interface (a plain `ray start --head` on this machine) is reached as Ray reaches
    it, through the machine's address; so is an address that is not loopback, or nothing listening at all."""
    with _listen("0.0.0.0") as head:
        port = head.getsockname()[1]
        assert not head_on_loopback_only(f"127.0.0.1:{port}")
        assert not head_on_loopback_only(f"{_machine_address()}:{port}")
        # Another user's listener on IPv6 loopback at that port (IPv4's is the head's) switches nothing.
        if socket.has_ipv6 and Path("/proc/net/if_inet6").exists():
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as other:
                other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                other.bind(("::1", port))
                other.listen()
                assert not head_on_loopback_only(f"127.0.0.1:{port}")
    assert not head_on_loopback_only(f"127.0.0.1:{port}")
    assert not head_on_loopback_only("ray-head:6379")


@pytest.mark.parametrize("address, message", [
    ("head-without-port", "is not HOST:PORT"),
    ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
])
def test_ray_bad_addresses_are_one_line_user_errors(address, message):
    with pytest.raises(StudyError, match=message) as caught:
        check_reachable(address, timeout_s=2)
    assert "\n" not in str(caught.value)
