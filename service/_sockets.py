"""The listening TCP sockets of this machine's network namespace, as the kernel lists them (/proc/net/tcp and
tcp6: what `ss -ltn` shows), and which addresses are loopback. Linux only: elsewhere the table is empty."""

from __future__ import annotations

import ipaddress
from pathlib import Path


def tcp_listeners() -> dict[str, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket."""
    found = {}
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            found[fields[9]] = (str(ipaddress.ip_address(raw)), int(hex_port, 16))
    return found


def unmapped(address: str) -> str:
    """The IPv4 address an IPv4-mapped IPv6 one stands for (::ffff:127.0.0.1 -> 127.0.0.1), else the address as
    Python writes it: a dual-stack server bound to an IPv4 address, as Ray's gRPC servers are, is listed in
    tcp6 that way, and Python before 3.13 writes it ::ffff:7f00:1."""
    ip = ipaddress.ip_address(address)
    return str(ip.ipv4_mapped) if ip.version == 6 and ip.ipv4_mapped is not None else str(ip)


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4 loopback address mapped into IPv6 (::ffff:127.0.0.1)."""
    return ipaddress.ip_address(unmapped(address)).is_loopback
