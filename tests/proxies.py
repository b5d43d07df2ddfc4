"""Byte pipes for the tests' loopback proxies (a healed hostile server relaying to a good
one, an IMAP connection cut in the middle of a FETCH)."""

from __future__ import annotations

import socket


def pipe(src: socket.socket, dst: socket.socket, *, cut_after: int | None = None) -> None:
    """Copy ``src`` to ``dst`` until either side ends, then shut both down. With
    ``cut_after``: pass that many bytes, then cut both sides (a connection that drops)."""
    passed = 0
    try:
        while data := src.recv(65536 if cut_after is None else 4096):
            if cut_after is not None and passed + len(data) > cut_after:
                dst.sendall(data[: cut_after - passed])
                break
            passed += len(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
