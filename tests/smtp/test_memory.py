"""A 25 MB message sent from a file is never held in memory (not even once): the client's
Python allocations stay far below the message size."""

from __future__ import annotations

import os
import tracemalloc

import psutil
import pytest

from mailer.smtp import SMTPClient
from tests.smtp_servers import MiniSMTP

SIZE = 25 * 1024 * 1024
LIMIT = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.eml"
    line = b"x" * 76 + b"\n"  # bare LFs: the client has to normalise every line
    with path.open("wb") as f:
        f.write(b"Subject: big\n\n")
        for _ in range(SIZE // len(line)):
            f.write(line)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "extensions", [("PIPELINING", "SIZE 100000000"), ("PIPELINING", "CHUNKING")]
)
def test_it_streams_a_25_mb_file_in_bounded_memory(scripted_server_factory, big_file, extensions):
    session = MiniSMTP(extensions=extensions, keep_content=False)
    server = scripted_server_factory(session, record=False)
    process = psutil.Process(os.getpid())
    with SMTPClient(server.host, server.port, security="none") as client:
        rss_before = process.memory_info().rss
        tracemalloc.start()
        try:
            with big_file.open("rb") as f:
                result = client.send("a@example.org", ["b@example.org"], f)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        rss_growth = process.memory_info().rss - rss_before
    assert result.delivered
    lines = SIZE // 77
    assert session.messages[0].size == len(b"Subject: big\r\n\r\n") + lines * 78
    assert peak < LIMIT, f"peak Python allocations {peak / 1e6:.1f} MB"
    assert rss_growth < LIMIT, f"RSS grew {rss_growth / 1e6:.1f} MB"
