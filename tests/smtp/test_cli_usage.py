"""``python -m mailer.smtp``: bad usage exits with 64 and says what to do, before any
connection is made. The server named is a port nothing listens on, so a case that wrongly
got past the usage checks would fail with 2 (connection refused) instead of 64."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.smtp.cli_run import ROOT, run_cli

SECRET = "s3cret-Hunter2-never-shown"
MISSING = "{tmp}/missing"  # a path that does not exist

# (arguments after "check --server DEAD", what stderr must say)
CHECK_CASES = [
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (
        ["--user", "me", "--password-env", "MAILROOM_TEST_NO_SUCH_VARIABLE"],
        "MAILROOM_TEST_NO_SUCH_VARIABLE is not set",
    ),
    (["--user", "me", "--password-file", MISSING], "cannot read the password file"),
    (["--user", "me"], "needs a password"),
    (["--password-env", "SECRET_VAR"], "no --user"),
    (
        ["--user", "me", "--password-env", "SECRET_VAR", "--password-file", MISSING],
        "not allowed with argument",
    ),
    (["--auth", "KERBEROS"], "unknown mechanism 'KERBEROS'"),
    (["--cafile", "{tmp}/ca.pem", "--insecure"], "contradict"),
    (["--cafile", MISSING], "no such file"),
    (["--timeout", "0"], "more than 0 seconds"),
    (["--data-timeout", "soon"], "'soon' is not a number of seconds"),
    (["--security", "none", "--local-name", "two words"], "not a valid EHLO name"),
    (["--security", "ssl"], "invalid choice: 'ssl'"),
]

# (arguments after "send --server DEAD --from a@example.com --to b@example.net", stderr)
SEND_CASES = [
    ([], "either --eml FILE, or --subject S and --body TEXT"),
    (["--subject", "only a subject"], "either --eml FILE, or --subject S and --body TEXT"),
    (["--eml", "{tmp}/m.eml", "--subject", "again"], "cannot be combined"),
    (["--eml", MISSING], "cannot read --eml"),
    (["--subject", "s", "--body", "b", "--attach", MISSING], "cannot read the attachment"),
    (
        ["--to", "c@example.net\r\nRCPT TO:<d@evil.example>", "--subject", "s", "--body", "b"],
        "not a usable address",
    ),
    (["--subject", "hi\r\nBcc: c@evil.example", "--body", "b"], "cannot build the message"),
    (
        ["--subject", "s", "--body", "b", "--dsn-notify", "NEVER,SUCCESS"],
        "NEVER cannot be combined",
    ),
    (
        ["--subject", "s", "--body", "b", "--dsn-notify", "SOMETIMES"],
        "give NEVER, or a comma-separated list",
    ),
    (["--subject", "s", "--body", "b", "--dsn-ret", "ALL"], "invalid choice: 'ALL'"),
]


@pytest.fixture
def dead_server() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_text("not read: the usage check comes first")
    (tmp_path / "m.eml").write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    return tmp_path


def _fill(args: list[str], tmp: Path) -> list[str]:
    return [arg.format(tmp=tmp) for arg in args]


@pytest.mark.parametrize(("args", "says"), CHECK_CASES)
def test_check_exits_64_for_bad_usage(dead_server: str, tmp: Path, args, says: str) -> None:
    run = run_cli("check", "--server", dead_server, *_fill(args, tmp), env={"SECRET_VAR": SECRET})
    assert run.returncode == 64, run.stderr
    assert says in run.stderr
    assert run.stderr.startswith("usage: ")
    assert SECRET not in run.stdout + run.stderr


@pytest.mark.parametrize(("args", "says"), SEND_CASES)
def test_send_exits_64_for_bad_usage(dead_server: str, tmp: Path, args, says: str) -> None:
    run = run_cli(
        "send",
        "--server",
        dead_server,
        "--security",
        "none",
        "--from",
        "a@example.com",
        "--to",
        "b@example.net",
        *_fill(args, tmp),
    )
    assert run.returncode == 64, run.stderr
    assert says in run.stderr


@pytest.mark.parametrize(
    "argv", [[], ["check"], ["send", "--server", "127.0.0.1:2525"], ["frobnicate"]]
)
def test_it_exits_64_for_a_missing_command_or_option(argv: list[str]) -> None:
    run = run_cli(*argv)
    assert run.returncode == 64
    assert "error: " in run.stderr


@pytest.mark.parametrize(
    "server", ["127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:smtp", "[::1", "[::1]x", ":25"]
)
def test_it_exits_64_for_a_bad_server(server: str) -> None:
    run = run_cli("check", "--server", server, "--security", "none")
    assert run.returncode == 64, run.stderr
    assert "--server" in run.stderr


def test_it_refuses_a_password_in_argv_without_echoing_it(dead_server: str) -> None:
    for args in (["--password", SECRET], [f"--password={SECRET}"]):
        run = run_cli("check", "--server", dead_server, "--user", "me", *args)
        assert run.returncode == 64
        assert "--password-env" in run.stderr and "--password-file" in run.stderr
        assert SECRET not in run.stdout + run.stderr


def test_it_prints_help_with_exit_0() -> None:
    run = run_cli("send", "--help")
    assert run.returncode == 0
    for option in (
        "--password-env",
        "--password-file",
        "--eml",
        "--attach",
        "--json",
        "--transcript",
        "--dsn-notify",
        "--local-name",
        "--data-timeout",
    ):
        assert option in run.stdout
    assert "--password " not in run.stdout  # the refused option stays hidden


def test_it_runs_without_django() -> None:
    """House rule: mailer.smtp imports no Django, the tool included."""
    code = (
        "import sys, runpy; sys.argv = ['mailer.smtp', '--help']\n"
        "try:\n    runpy.run_module('mailer.smtp', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "check" in run.stdout and "send" in run.stdout
