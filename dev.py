#!/usr/bin/env python3
"""Mailroom's two README commands, self-bootstrapping on a fresh machine (Python 3.11+).

    python3 dev.py up      # run Mailroom on the embedded default (web + worker + beat + sink)
    python3 dev.py test    # run the whole test suite

Both create ``.venv`` and install the pinned dependencies (``pyproject.toml``) the first time,
and again whenever ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".mailroom-installed"


def bootstrap() -> None:
    """Create .venv and install pinned dependencies if missing or out of date."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py runs under whatever python3 is)
        sys.exit(f"Mailroom needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text() == want:
        return
    if not PY.exists():
        print("Creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing pinned dependencies into .venv (first run only) ...", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run(
        [str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True, cwd=ROOT
    )
    STAMP.write_text(want)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def cmd_test(args: list[str]) -> int:
    """Pass 1: everything on the embedded default (SQLite, filesystem broker).
    Pass 2: the pipeline and service tests again on PostgreSQL + Redis, when they answer
    on loopback (always in CI, where REQUIRE_SERVICES=1 makes their absence a failure)."""
    env = dict(os.environ)
    base = [str(PY), "-m", "pytest"]
    print("== pass 1: SQLite + filesystem broker", flush=True)
    rc1 = subprocess.run([*base, "-m", "not services", *args], cwd=ROOT, env=env).returncode
    if args:  # a selection was given: run it once, on the embedded default only
        return rc1
    have = _port_open("127.0.0.1", 5432) and _port_open("127.0.0.1", 6379)
    if not have and env.get("REQUIRE_SERVICES") != "1":
        print("== pass 2 skipped: PostgreSQL and Redis do not answer on 127.0.0.1", flush=True)
        return rc1
    print("== pass 2: PostgreSQL + Redis", flush=True)
    env2 = dict(env)
    env2.setdefault("MAILROOM_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mailroom")
    env2.setdefault("MAILROOM_TEST_BROKER_URL", "redis://127.0.0.1:6379/9")
    env2.setdefault("MAILROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/10")
    rc2 = subprocess.run(
        [*base, "-m", "services or pipeline", "-p", "no:cacheprovider"], cwd=ROOT, env=env2
    ).returncode
    return rc1 or rc2


def cmd_up(args: list[str]) -> int:
    # Replace this process rather than wait for a child: subprocess.run would SIGKILL
    # `manage.py up` a quarter second after Ctrl-C, before it has stopped its own children.
    os.chdir(ROOT)
    os.execv(str(PY), [str(PY), str(ROOT / "manage.py"), "up", *args])


def main() -> int:
    commands = {"test": cmd_test, "up": cmd_up}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 64
    bootstrap()
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
