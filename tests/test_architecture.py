"""Each import contract (pyproject.toml, [tool.importlinter]) really fails when its
forbidden import is written: a copy of the three packages gets one module with that import,
and lint-imports must report exactly that contract broken and the other three kept. (The
real tree keeping all four is tests/test_lint.py.)"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

SMTP = "mailer.smtp imports neither Django nor the rest of mailer (it is usable on its own)"
MAILER = "mailer imports nothing from webui"
WEBUI = "webui talks SMTP only through mailer's services (never imports mailer.smtp itself)"
CONFIG = "config holds no business logic: it imports neither mailer nor webui"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The Python files of config, mailer and webui, and pyproject.toml, in a temp dir."""
    dest = tmp_path_factory.mktemp("tree")

    def not_python(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n == "__pycache__"
                or not (n.endswith(".py") or (Path(folder) / n).is_dir())]

    for package in ("config", "mailer", "webui"):
        shutil.copytree(ROOT / package, dest / package, ignore=not_python)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH first: the copy, not this checkout's editable install, is analysed.
    # COLUMNS: keep each contract's name and verdict on one line.
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "300"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120,
    )


def test_it_keeps_every_contract_in_the_unchanged_copy(tree):
    r = _lint_imports(tree)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 4 kept, 0 broken." in r.stdout


@pytest.mark.parametrize(
    ("path", "statement", "broken"),
    [
        ("mailer/smtp/probe.py", "import django.conf", SMTP),
        ("mailer/smtp/probe.py", "from mailer import models", SMTP),
        ("mailer/smtp/probe.py", "from mailer.policy import classify", SMTP),
        ("mailer/probe.py", "from webui import forms", MAILER),
        ("mailer/management/commands/probe.py", "import webui.views", MAILER),
        ("webui/probe.py", "from mailer.smtp import errors", WEBUI),
        ("webui/views/probe.py", "from mailer.smtp.client import SMTPClient", WEBUI),
        ("config/probe.py", "import mailer.services", CONFIG),
        ("config/probe.py", "from webui import urls", CONFIG),
    ],
)
def test_it_breaks_the_contract_of_each_forbidden_import(tree, path, statement, broken):
    probe = tree / path
    probe.write_text(statement + "\n")
    try:
        r = _lint_imports(tree)
    finally:
        probe.unlink()
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Contracts: 3 kept, 1 broken." in out, out
    assert re.search(rf"^{re.escape(broken)} BROKEN$", out, re.M), out
    assert f"{path[:-3].replace('/', '.')} -> " in out, out  # the import is named
