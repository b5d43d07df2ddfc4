"""``manage.py smtpaccount``: add, list, check (against real aiosmtpd servers), resume."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from mailer.models import OutboxMessage, SmtpAccount
from tests.mailer.base import make_account, send
from tests.smtp_servers import smtp_server_factory, tls_certificates  # noqa: F401 (fixtures)

PASSWORD = "correct horse battery staple"


def run(*args) -> str:
    out = StringIO()
    call_command("smtpaccount", *args, stdout=out)
    return out.getvalue()


def add(*extra, label="Work") -> str:
    return run(
        "add",
        "--user",
        "owner",
        "--label",
        label,
        "--host",
        "127.0.0.1",
        "--from-address",
        "owner@example.com",
        *extra,
    )


def test_it_adds_an_account_with_the_password_from_the_environment(owner, monkeypatch):
    monkeypatch.setenv("WORK_PW", PASSWORD)
    out = add(
        "--port",
        "2525",
        "--security",
        "tls",
        "--username",
        "owner",
        "--password-env",
        "WORK_PW",
        "--rate",
        "5",
    )
    account = SmtpAccount.objects.get(owner=owner, label="Work")
    assert (account.host, account.port, account.security) == ("127.0.0.1", 2525, "tls")
    assert account.quota_per_minute == 5 and account.is_default
    assert account.get_secret() == PASSWORD
    assert PASSWORD not in account.secret_encrypted  # stored as ciphertext
    assert PASSWORD not in out and "smtpaccount check Work --user owner" in out


def test_it_reads_the_password_from_a_file_and_picks_the_default_port(owner, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    add("--security", "starttls", "--username", "owner", "--password-file", str(secret))
    account = SmtpAccount.objects.get(owner=owner)
    assert account.port == 587 and account.get_secret() == PASSWORD


def test_it_fills_a_provider_preset(owner, monkeypatch):
    monkeypatch.setenv("TOKEN", "ya29.token")
    run(
        "add",
        "--user",
        "owner",
        "--label",
        "Gmail",
        "--preset",
        "gmail",
        "--username",
        "owner@gmail.com",
        "--password-env",
        "TOKEN",
        "--from-address",
        "owner@gmail.com",
    )
    account = SmtpAccount.objects.get(owner=owner)
    assert (account.host, account.port, account.security) == ("smtp.gmail.com", 587, "starttls")
    assert account.quota_per_day is not None


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--username", "owner", "--password-env", "NO_SUCH_VAR_X"], "NO_SUCH_VAR_X is not set"),
        (["--username", "owner"], "has no password"),
        (["--password-env", "HOME"], "no --username"),
        (["--rate", "0"], "--rate must be at least 1"),
        (["--cafile", "/nonexistent/ca.pem"], "Cannot read the CA certificate"),
    ],
)
def test_it_refuses_bad_input_in_plain_words(owner, extra, words):
    with pytest.raises(CommandError, match=words):
        add(*extra)
    assert not SmtpAccount.objects.exists()


def test_it_refuses_an_invalid_from_address_and_a_duplicate_label(owner):
    with pytest.raises(
        CommandError, match="is not a valid address: An email address must have an @-sign"
    ):
        run("add", "--user", "owner", "--label", "X", "--host", "h", "--from-address", "nope")
    add("--auth", "none")
    with pytest.raises(CommandError, match="already has an account labelled 'Work'"):
        add("--auth", "none")
    with pytest.raises(CommandError, match="no user 'ghost'"):
        run(
            "add",
            "--user",
            "ghost",
            "--label",
            "X",
            "--host",
            "h",
            "--from-address",
            "a@example.com",
        )


def test_it_lists_accounts_with_their_state(owner):
    make_account(owner, label="Paused one", paused_at=timezone.now(), paused_reason="Bad password.")
    make_account(owner, label="Fine", quota_per_hour=100)
    out = run("list")
    assert "Paused one [owner]" in out and "PAUSED: Bad password." in out
    assert "100/hour" in out
    rows = json.loads(run("list", "--json", "--user", "owner"))
    assert [r["label"] for r in rows] == ["Fine", "Paused one"]
    assert rows[1]["paused"] is True and "secret" not in json.dumps(rows).replace("has_secret", "")


def test_it_checks_an_account_over_starttls_with_auth(owner, smtp_server_factory, monkeypatch):  # noqa: F811
    server = smtp_server_factory(security="starttls", accounts={"owner": PASSWORD})
    monkeypatch.setenv("WORK_PW", PASSWORD)
    add(
        "--port",
        str(server.port),
        "--security",
        "starttls",
        "--username",
        "owner",
        "--password-env",
        "WORK_PW",
        "--cafile",
        server.ca_file,
    )
    out = run("check", "Work")
    assert "The account is ready to send" in out
    assert "STARTTLS" in out and "C: EHLO" in out  # the transcript
    assert '"auth"' in out  # the capability snapshot, as JSON
    assert PASSWORD not in out  # redacted
    account = SmtpAccount.objects.get(owner=owner)
    assert account.capabilities_seen_at is not None and account.capabilities


def test_it_reports_a_refused_login_in_plain_words(owner, smtp_server_factory, monkeypatch):  # noqa: F811
    server = smtp_server_factory(security="starttls", accounts={"owner": PASSWORD})
    monkeypatch.setenv("WORK_PW", "wrong password")
    add(
        "--port",
        str(server.port),
        "--security",
        "starttls",
        "--username",
        "owner",
        "--password-env",
        "WORK_PW",
        "--cafile",
        server.ca_file,
    )
    out = StringIO()
    with pytest.raises(CommandError, match="refused the username or password"):
        call_command("smtpaccount", "check", "Work", "--user", "owner", stdout=out)
    assert "535" in out.getvalue() and "wrong password" not in out.getvalue()


def test_it_refuses_an_untrusted_certificate(owner, smtp_server_factory):  # noqa: F811
    server = smtp_server_factory(security="starttls")
    add("--port", str(server.port), "--security", "starttls", "--auth", "none")
    with pytest.raises(CommandError, match="certificate"):
        run("check", "Work")


def test_it_names_the_known_accounts_for_an_unknown_label(owner):
    make_account(owner, label="Fine")
    with pytest.raises(CommandError, match="no account labelled 'Nope'.*'Fine'"):
        run("check", "Nope")


def test_it_resumes_a_paused_account_and_releases_its_mail(owner):
    account = make_account(owner, label="Work", paused_at=timezone.now(), paused_reason="535")
    message = send(owner, account)
    later = timezone.now() + timezone.timedelta(hours=1)
    OutboxMessage.objects.filter(pk=message.pk).update(
        status=OutboxMessage.Status.DEFERRED,
        next_attempt_at=later,
        wait_reason="The account is paused.",
    )
    out = run("resume", "Work")
    assert "Resumed “Work”. 1 waiting message(s)" in out
    account.refresh_from_db()
    message.refresh_from_db()
    assert account.paused_at is None and account.paused_reason == ""
    assert message.next_attempt_at <= timezone.now() and message.wait_reason == ""


def test_it_refuses_a_password_over_plaintext_unless_allowed(owner, monkeypatch):
    monkeypatch.setenv("WORK_PW", PASSWORD)
    login = ["--security", "none", "--username", "owner", "--password-env", "WORK_PW"]
    with pytest.raises(CommandError, match="cross the network in clear"):
        add(*login)
    add(*login, "--allow-plaintext-auth")
    assert SmtpAccount.objects.get(owner=owner).allow_plaintext_auth
