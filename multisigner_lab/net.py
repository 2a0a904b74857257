"""Loopback addresses and free ports for lab servers.

Every server gets its *own* random 127/8 address: DNSViz keys servers by IP address (it
would merge providers sharing 127.0.0.1), and a random address out of ~16 million makes a
collision between parallel pytest-xdist workers practically impossible, so a port is
checked on one address only.
"""

from __future__ import annotations

import random
import socket

from multisigner_lab.errors import LabError

_ATTEMPTS = 50


def random_loopback(rng: random.Random | None = None) -> str:
    """A random address in 127.0.0.0/8 outside 127.0.0.0/24 (127.0.0.1 is shared with
    everything else on the host) and never a .0 or .255 host part (look like network or
    broadcast addresses to some tools)."""
    r = rng or random.SystemRandom()
    while True:
        b, c, d = r.randrange(256), r.randrange(256), r.randrange(1, 255)
        if (b, c) != (0, 0):
            return f"127.{b}.{c}.{d}"


def _bind(kind: socket.SocketKind, address: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, kind)
    try:
        # No SO_REUSEADDR: we want to know the port is free right now, not reusable.
        s.bind((address, port))
    except OSError:
        s.close()
        raise
    return s


def free_port(address: str) -> int:
    """A port free for both TCP and UDP on ``address`` (DNS servers bind both).

    The kernel picks a TCP port; the same number must then bind for UDP too, else retry.
    The sockets are closed before returning, so a tiny race remains: callers retry a server
    whose start fails with "address in use".
    """
    for _ in range(_ATTEMPTS):
        tcp = _bind(socket.SOCK_STREAM, address, 0)
        try:
            port = int(tcp.getsockname()[1])
            try:
                _bind(socket.SOCK_DGRAM, address, port).close()
            except OSError:
                continue
            return port
        finally:
            tcp.close()
    raise LabError(f"no port free for both TCP and UDP on {address} after {_ATTEMPTS} tries")


def free_tcp_port(address: str = "127.0.0.1") -> int:
    """A free TCP port (for HTTP APIs, which need no UDP)."""
    s = _bind(socket.SOCK_STREAM, address, 0)
    try:
        return int(s.getsockname()[1])
    finally:
        s.close()


def loopback_endpoint() -> tuple[str, int]:
    """A random loopback address and a TCP+UDP-free port on it, retrying on collision
    (an address that cannot be bound at all, or no common free port)."""
    last: Exception | None = None
    for _ in range(_ATTEMPTS):
        address = random_loopback()
        try:
            return address, free_port(address)
        except (OSError, LabError) as exc:
            last = exc
    raise LabError(f"no free loopback address/port found: {last}")
