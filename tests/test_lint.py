"""The tree stays clean under the project's own checkers, so drift shows up as a red test
rather than in review: ruff (style), import-linter (the four imports the design forbids)
and mypy (the typed modules). Each runs from this .venv as a subprocess, with its output
shown on failure; none of them is ever skipped (a missing tool fails the test)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str) -> None:
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_it_passes_ruff():
    _run(sys.executable, "-m", "ruff", "check", "--output-format", "concise", ".")


def test_it_keeps_the_import_contracts():
    # Contracts: [tool.importlinter] in pyproject.toml; tests/test_architecture.py shows
    # that each of them fails when its import is written.
    _run(str(BIN / "lint-imports"), "--no-logo")


def test_it_passes_mypy():
    # Files and strictness: [tool.mypy] in pyproject.toml. The cache (.mypy_cache) keeps
    # a run with few changes to a few seconds.
    _run(sys.executable, "-m", "mypy")


def test_it_refuses_an_unannotated_def_in_the_smtp_client(tmp_path):
    # The strict part of the mypy config binds: mailer/smtp/data.py with one unannotated
    # function added (mypy's --shadow-file reads it in place of the real file) fails. Only
    # that file is checked, with its own cache dir so the shadow never mixes with the tree.
    shadow = tmp_path / "data.py"
    source = (ROOT / "mailer/smtp/data.py").read_text()
    shadow.write_text(source + "\n\ndef probe(x):\n    return 1\n")
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
         "--shadow-file", "mailer/smtp/data.py", str(shadow), "mailer/smtp/data.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "mailer/smtp/data.py" in r.stdout and "[no-untyped-def]" in r.stdout, r.stdout


MAX_FUNCTION_LINES = 60


def test_no_function_in_mailer_reaches_60_lines():
    # Issue 12: a reader takes in any function of the domain at once. Migrations are
    # generated, not read. Counted from the def line to the last line, docstring included.
    long = []
    for path in sorted((ROOT / "mailer").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines >= MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines}")
    assert not long, "functions of 60 lines or more:\n" + "\n".join(long)


def test_the_function_length_check_sees_a_long_function(tmp_path, monkeypatch):
    # The check above binds: a tree whose one module has a 60-line function fails it.
    (tmp_path / "mailer").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(59))
    (tmp_path / "mailer" / "long.py").write_text("def long():\n" + body)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    try:
        test_no_function_in_mailer_reaches_60_lines()
    except AssertionError as exc:
        assert "mailer/long.py:1 long: 60" in str(exc)
    else:
        raise AssertionError("a 60-line function passed the check")
