"""Who drives a study: the driver's id in the registry, whether a local driver still lives, ending it.

A driver is the process that runs a study's Tuner: `hpsearch submit` on a laptop, or the Ray job the API
launches on a cluster (whose liveness the API asks Ray about, see service/api/_jobs.py). Its id is
`host:pid`; only a driver on this host can be checked or ended from here.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Optional


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _local_pid(driver: Optional[str]) -> Optional[int]:
    """The pid of a driver on this host, else None (no driver, another host, or this very process)."""
    host, _, pid = (driver or "").partition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return None
    return int(pid)


def driver_alive(driver: Optional[str]) -> bool:
    """Whether the driver `host:pid` runs on this host (False for another host: it cannot be checked here)."""
    pid = _local_pid(driver)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def on_this_host(driver: Optional[str]) -> bool:
    return (driver or "").partition(":")[0] == socket.gethostname()


def end_driver(driver: Optional[str]) -> None:
    """SIGKILL the driver process `host:pid` on this host (`hpsearch stop --force`)."""
    pid = _local_pid(driver)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
