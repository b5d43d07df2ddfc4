"""Replies are acknowledged at once (TCP_QUICKACK after every read, on Linux).

A server that answers a pipelined group in two small writes with Nagle on (Postfix's
smtp-sink after the data and the next envelope sent ahead) holds its second write until the
client's ACK, which Linux delays by up to 40 ms: on loopback that stall was most of a batched
message's time (bench/pipeline.py). What fails if it breaks: the option set after each read.
The sockets are real TCP on loopback; only setsockopt is watched, since the kernel's ACK
timing cannot be observed from user space without timing the test.
"""

from __future__ import annotations

import socket

import pytest

from mailer.smtp.client import _Reader

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's"
)


class _Watched(socket.socket):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.quickacks = 0

    def setsockopt(self, level, option, value, *rest):  # type: ignore[override]
        if (level, option, value) == (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1):
            self.quickacks += 1
        return super().setsockopt(level, option, value, *rest)


def test_every_read_asks_for_an_immediate_ack():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        plain = socket.create_connection(listener.getsockname())
        client = _Watched(fileno=plain.detach())
        server, _ = listener.accept()
        with client, server:
            reader = _Reader(client)
            server.sendall(b"250 2.0.0 Ok: queued\r\n")
            assert reader.readline(1000) == b"250 2.0.0 Ok: queued\r\n"
            server.sendall(b"250 2.1.0 Ok\r\n")
            assert reader.readline(1000) == b"250 2.1.0 Ok\r\n"
            assert reader.reads == 2
            assert client.quickacks == 2
