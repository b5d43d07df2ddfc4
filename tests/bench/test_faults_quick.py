"""The fault suite's quick run (``bench/faults.py --quick``) as part of CI pass 2: real
Celery workers, its own Redis, a fresh PostgreSQL database, hostile SMTP servers. Nothing
may be lost; duplicates only inside the documented window (a worker killed between the
server's 250 and the commit), at most the messages in flight at the kill."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
TOTAL = re.compile(
    r"^TOTAL scenarios=(?P<scenarios>\d+) queued=(?P<queued>\d+) "
    r"delivered_once=(?P<once>\d+) duplicated=(?P<duplicated>\d+) lost=(?P<lost>\d+)$"
)
BOUND = re.compile(r"^BOUND duplicated<=(?P<bound>\d+)$", re.M)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.services
@pytest.mark.slow
def test_it_loses_nothing_and_duplicates_nothing_outside_the_window() -> None:
    require_service(shutil.which("redis-server") is not None, "redis-server (the binary)")
    require_service(_answers(5432), "PostgreSQL on 127.0.0.1:5432")
    # The suite sets up its own database, broker and data directory: hand it none of ours.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MAILROOM_", "CELERY_", "DATABASE_", "DJANGO_"))}
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "--quick"],
        capture_output=True, text=True, timeout=420, cwd=ROOT, env=env,
    )
    lines = run.stdout.strip().splitlines()
    assert lines, run.stderr[-5000:]
    total = TOTAL.match(lines[-1])
    assert total, f"last line is not the TOTAL line: {lines[-1]!r}\n{run.stderr[-5000:]}"
    bound = BOUND.search(run.stdout)
    assert bound, run.stdout
    figures = {k: int(v) for k, v in total.groupdict().items()}
    # The progress lines (stderr) say when and where a scenario went wrong.
    report = run.stdout + "\n".join(line for line in run.stderr.splitlines()
                                    if line.startswith("["))
    assert figures["scenarios"] >= 16, report
    assert figures["queued"] > 0
    assert figures["lost"] == 0, report
    assert figures["duplicated"] <= int(bound["bound"]), report
    assert run.returncode == 0, report
