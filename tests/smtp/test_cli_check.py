"""``python -m mailer.smtp check`` against real aiosmtpd servers (STARTTLS, implicit TLS,
AUTH), run as a subprocess: exit statuses, plain-words errors, and the password never
showing up anywhere in the output, the transcript included."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.smtp.cli_run import run_cli, run_json
from tests.smtp_servers import RunningServer, TLSCertificates

USER = "alice"
SECRET = "Tr0ub4dor&3-not-to-be-shown"
ENV = {"MAILROOM_TEST_SMTP_PASSWORD": SECRET}


def _check(server: RunningServer, *extra: str, security: str | None = None) -> list[str]:
    return [
        "check",
        "--server",
        f"{server.host}:{server.port}",
        "--security",
        security or server.security,
        "--timeout",
        "10",
        *extra,
    ]


def _login(*extra: str) -> tuple[str, ...]:
    return ("--user", USER, "--password-env", "MAILROOM_TEST_SMTP_PASSWORD", *extra)


def _secret_forms() -> list[str]:
    """The secret as it would appear on the wire for PLAIN and LOGIN, and as typed."""
    b64 = base64.b64encode
    return [
        SECRET,
        b64(SECRET.encode()).decode(),
        b64(f"\0{USER}\0{SECRET}".encode()).decode(),
        b64(f"{USER}\0{USER}\0{SECRET}".encode()).decode(),
    ]


def _assert_no_secret(*outputs: str) -> None:
    for text in outputs:
        for form in _secret_forms():
            assert form not in text


@pytest.fixture
def auth_server(smtp_server_factory) -> RunningServer:
    return smtp_server_factory(security="starttls", accounts={USER: SECRET})


def test_it_checks_a_plain_server(smtp_server: RunningServer) -> None:
    run = run_cli(*_check(smtp_server))
    assert run.returncode == 0, run.stderr
    assert f"Connected to 127.0.0.1:{smtp_server.port} without encryption." in run.stdout
    assert "  SIZE 33554432" in run.stdout
    assert "The account works." in run.stdout
    assert smtp_server.messages == []


def test_it_logs_in_after_starttls_with_the_ca_file(
    auth_server: RunningServer,
    tls_certificates: TLSCertificates,
) -> None:
    run = run_cli(*_check(auth_server, "--cafile", tls_certificates.ca_file, *_login()), env=ENV)
    assert run.returncode == 0, run.stderr
    assert (
        f"with STARTTLS (certificate verified against {tls_certificates.ca_file}), "
        f"logged in as {USER} with"
    ) in run.stdout
    assert auth_server.handler.login_attempts[-1][1] == USER


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"])
def test_it_never_shows_the_password(
    auth_server: RunningServer,
    tls_certificates: TLSCertificates,
    mechanism: str,
) -> None:
    args = _check(
        auth_server,
        "--cafile",
        tls_certificates.ca_file,
        "--transcript",
        *_login("--auth", mechanism.lower()),
    )
    status, out = run_json(*args, env=ENV)
    assert status == 0, out
    assert auth_server.handler.login_attempts[-1] == (mechanism, USER)
    assert any(line.startswith(f"C: AUTH {mechanism}") for line in out["transcript"])
    run = run_cli(*args, env=ENV)
    assert run.returncode == 0
    assert "C: AUTH" in run.stdout
    _assert_no_secret("\n".join(out["transcript"]), run.stdout, run.stderr)


def _file_login(tmp_path: Path, password: str) -> list[str]:
    path = tmp_path / "password"
    path.write_text(password + "\n")  # as an editor saves it: the line end is not part of it
    return ["--user", USER, "--password-file", str(path)]


def test_it_exits_3_for_a_wrong_password_without_showing_it(
    auth_server: RunningServer, tls_certificates: TLSCertificates, tmp_path: Path
) -> None:
    login = _file_login(tmp_path, SECRET + "-wrong")
    args = _check(auth_server, "--cafile", tls_certificates.ca_file, "--transcript", *login)
    run = run_cli(*args, "--auth", "LOGIN")
    assert run.returncode == 3
    assert "Check failed:" in run.stderr
    assert "What to do: Check the user name and the password" in run.stderr
    status, out = run_json(*args)
    assert status == 3
    assert out["error"]["type"] == "SMTPAuthenticationError"
    assert out["error"]["code"] == 535
    assert out["error"]["phase"] == "auth"
    _assert_no_secret(run.stdout, run.stderr, "\n".join(out["transcript"]))


def test_it_reads_the_password_file_without_its_line_end(
    auth_server: RunningServer, tls_certificates: TLSCertificates, tmp_path: Path
) -> None:
    login = _file_login(tmp_path, SECRET)
    run = run_cli(*_check(auth_server, "--cafile", tls_certificates.ca_file, *login))
    assert run.returncode == 0, run.stderr


def test_it_exits_3_for_an_untrusted_certificate(
    smtp_server_factory,
    untrusted_certificates: TLSCertificates,
    tls_certificates: TLSCertificates,
) -> None:
    server = smtp_server_factory(security="starttls", certificates=untrusted_certificates)
    for extra in ((), ("--cafile", tls_certificates.ca_file)):
        status, out = run_json(*_check(server, *extra))
        assert status == 3
        assert out["error"]["type"] == "SMTPCertificateError"
        assert out["error"]["transient"] is False
        assert "--cafile" in out["error"]["hint"]
    run = run_cli(*_check(server, "--cafile", untrusted_certificates.ca_file))
    assert run.returncode == 0, run.stderr


def test_it_connects_without_verifying_when_insecure(
    smtp_server_factory,
    untrusted_certificates: TLSCertificates,
) -> None:
    server = smtp_server_factory(security="tls", certificates=untrusted_certificates)
    run = run_cli(*_check(server, "--insecure"))
    assert run.returncode == 0, run.stderr
    assert "over TLS (certificate NOT verified: --insecure)" in run.stdout


def test_it_checks_implicit_tls(
    smtp_server_factory,
    tls_certificates: TLSCertificates,
) -> None:
    server = smtp_server_factory(security="tls")
    status, out = run_json(*_check(server, "--cafile", tls_certificates.ca_file))
    assert status == 0, out
    assert out["error"] is None
    assert out["capabilities"]["esmtp"] is True


def test_it_exits_3_when_starttls_is_not_offered(smtp_server: RunningServer) -> None:
    run = run_cli(*_check(smtp_server, security="starttls"))
    assert run.returncode == 3
    assert "What to do: The server does not offer STARTTLS." in run.stderr


def test_it_refuses_to_log_in_over_plaintext_unless_allowed(smtp_server_factory) -> None:
    server = smtp_server_factory(accounts={USER: SECRET}, auth_require_tls=False)
    status, out = run_json(*_check(server, *_login()), env=ENV)
    assert status == 3
    assert out["error"]["type"] == "SMTPPlaintextAuthRefused"
    assert server.handler.login_attempts == []
    status, out = run_json(*_check(server, *_login("--allow-plaintext-auth")), env=ENV)
    assert status == 0, out
    assert server.handler.login_attempts[-1][1] == USER


def test_it_exits_2_when_nothing_listens() -> None:
    status, out = run_json("check", "--server", f"127.0.0.1:{free_port()}", "--security", "none")
    assert status == 2
    assert out["error"]["type"] == "SMTPConnectError"
    assert out["capabilities"] is None


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word (no greeting)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    for sock in accepted:
        sock.close()
    listener.close()


def test_it_exits_2_when_the_server_is_too_slow(silent_server: int) -> None:
    run = run_cli(
        "check", "--server", f"127.0.0.1:{silent_server}", "--security", "none", "--timeout", "0.5"
    )
    assert run.returncode == 2
    assert "raise --timeout" in run.stderr
