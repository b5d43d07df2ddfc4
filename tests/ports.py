"""Free loopback ports picked by the tests themselves (port 0 does not work for servers
that are started in another process or announce their port up front)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Bind to port 0, read the port the kernel chose, close it and return it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
