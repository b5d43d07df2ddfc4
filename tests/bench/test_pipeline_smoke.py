"""Smoke test of the pipeline benchmark: a tiny ``bench/pipeline.py`` run on the embedded
default goes to the end, every message is recorded as sent, and each figure is printed. The
figures themselves are not judged (a shared CI machine makes them noise); the full run in
the report is where the targets are checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_tiny_run_prints_every_figure() -> None:
    require_service(Path("/usr/sbin/smtp-sink").is_file(), "Postfix's smtp-sink")
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "pipeline.py"),
            "--count",
            "10",
            "--backends",
            "embedded",
            "--sinks",
            "smtp-sink",
            "--sizes",
            "2 KB",
            "--no-memory",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    line = re.search(
        r"embedded +smtp-sink +2 KB +ours +(?P<ours>[\d.]+) msg/s "
        r"\((?P<conn>\d+) conn, +[\d.]+ MB\) +"
        r"naive +(?P<naive>[\d.]+) msg/s \((?P<naive_conn>\d+) conn, "
        r".*smtplib +(?P<bare>[\d.]+) msg/s",
        run.stdout,
    )
    assert line, run.stdout
    assert float(line["ours"]) > 0 and float(line["naive"]) > 0 and float(line["bare"]) > 0
    # Connection reuse shows even in a tiny run: at most one per worker; naive opens one per mail.
    assert 1 <= int(line["conn"]) <= 2 and int(line["naive_conn"]) == 10
    assert "states {'sent': 10}" in run.stdout
    # The same case through the delaying proxy (real round trips), ours against naive.
    delayed = re.search(
        r"embedded +smtp-sink\+10ms +2 KB +ours +(?P<ours>[\d.]+) msg/s .*"
        r"naive +(?P<naive>[\d.]+) msg/s \((?P<naive_conn>\d+) conn",
        run.stdout,
    )
    assert delayed, run.stdout
    assert float(delayed["ours"]) > 0 and int(delayed["naive_conn"]) == 10
    assert re.search(r"smtp-sink\+10ms +ours/naive >= 4.0 +[\d.]+×", run.stdout), run.stdout
