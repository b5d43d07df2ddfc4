"""Runs ``python -m mailer.smtp`` as a real subprocess, the way a person would, for the CLI
tests (``tests/smtp/test_cli_*.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the tool with ``args``; ``env`` adds to a copy of this process's environment."""
    full_env = dict(os.environ)
    full_env.pop("DJANGO_SETTINGS_MODULE", None)  # the tool must not need Django
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mailer.smtp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=full_env,
    )


def run_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """Run with ``--json`` and return the exit status and the parsed object."""
    run = run_cli(*args, "--json", env=env)
    assert run.stdout.strip(), f"no JSON on stdout; stderr: {run.stderr}"
    return run.returncode, json.loads(run.stdout)
