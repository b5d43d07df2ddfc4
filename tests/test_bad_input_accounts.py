"""Bad account settings, table-driven: each is refused with a clear error next to the
field, and nothing is lost — a new account is not half-created and the form comes back
with what was typed; an existing account keeps its working settings (and its secret)."""

from __future__ import annotations

import html

import pytest
import trustme

from mailer.models import SmtpAccount
from tests.bad_input import *  # noqa: F403  (the fixtures: owner, owner_client, account…)
from tests.bad_input import assert_clear_error

GOOD = {
    "label": "Work mail", "from_name": "Owen Owner", "from_address": "owen@example.com",
    "reply_to": "", "host": "smtp.example.com", "port": "587", "security": "starttls",
    "auth_mechanism": "auto", "username": "owen", "secret": "app-password-1",
    "verify_tls": "on", "ca_certificate": "", "quota_per_minute": "", "quota_per_hour": "",
    "quota_per_day": "", "preset": "",
}


def _ca_pem() -> str:
    return trustme.CA().cert_pem.bytes().decode()


def _private_key_pem() -> str:
    return trustme.CA().private_key_pem.bytes().decode()


def _truncated_cert() -> str:
    lines = _ca_pem().splitlines()
    return "\n".join(lines[:4] + lines[-1:])  # header, a little base64, footer


BAD = [
    pytest.param({"port": "0"}, "port", ("port", "65535"), id="port-0"),
    pytest.param({"port": "70000"}, "port", ("port", "65535"), id="port-70000"),
    pytest.param({"port": "-25"}, "port", ("port",), id="port-negative"),
    pytest.param({"port": "smtp"}, "port", ("number",), id="port-not-a-number"),
    pytest.param({"port": ""}, "port", ("required",), id="port-empty"),
    pytest.param({"security": "ssl3"}, "security", ("ssl3", "choice"), id="unknown-security-mode"),
    pytest.param({"security": ""}, "security", ("required",), id="no-security-mode"),
    pytest.param({"auth_mechanism": "kerberos"}, "auth_mechanism", ("kerberos", "choice"),
                 id="unknown-login-method"),
    pytest.param({"host": "smtp example.com"}, "host", ("host", "space"), id="host-with-spaces"),
    pytest.param({"host": "smtp.example.com\r\nRCPT TO:<eve@example.net>"}, "host", ("host",),
                 id="host-with-line-break"),
    pytest.param({"host": ""}, "host", ("required",), id="host-empty"),
    pytest.param({"ca_certificate": "hello, I am not a certificate"}, "ca_certificate",
                 ("certificate",), id="ca-not-a-certificate"),
    pytest.param({"ca_certificate": "PRIVATE_KEY"}, "ca_certificate", ("certificate",),
                 id="ca-is-a-private-key"),
    pytest.param({"ca_certificate": "TRUNCATED"}, "ca_certificate", ("certificate",),
                 id="ca-truncated"),
    pytest.param({"from_address": "not-an-address"}, "from_address", ("address",),
                 id="from-address-invalid"),
    pytest.param({"from_name": "Owen\r\nBcc: eve@example.net"}, "from_name", ("line break",),
                 id="from-name-with-line-break"),
    # What str.splitlines() (and so the email package) also takes for a line break.
    pytest.param({"from_name": "Owen\u2028Bcc: eve@example.net"}, "from_name", ("line break",),
                 id="from-name-with-unicode-line-separator"),
    pytest.param({"from_name": "Owen\x0cSmith"}, "from_name", ("line break",),
                 id="from-name-with-form-feed"),
    pytest.param({"from_name": "Owen\x07Smith"}, "from_name", ("control character", "U+0007"),
                 id="from-name-with-control-character"),
    pytest.param({"reply_to": "reply here"}, "reply_to", ("address",), id="reply-to-invalid"),
    pytest.param({"quota_per_minute": "-5"}, "quota_per_minute", ("0",), id="quota-negative"),
    pytest.param({"label": ""}, "label", ("required",), id="label-empty"),
]


def _data(bad: dict[str, str]) -> dict[str, str]:
    data = {**GOOD, **bad}
    special = {"PRIVATE_KEY": _private_key_pem, "TRUNCATED": _truncated_cert}
    if data["ca_certificate"] in special:
        data["ca_certificate"] = special[data["ca_certificate"]]()
    return data


def _field_errors(response, field: str) -> str:
    form = response.context["form"]
    return " ".join(form.errors.get(field, []))


@pytest.mark.parametrize(("bad", "field", "words"), BAD)
def test_it_refuses_a_bad_setting_on_a_new_account(bad, field, words, owner, owner_client):
    response = owner_client.post("/accounts/new/", _data(bad))
    assert response.status_code == 400
    assert_clear_error(_field_errors(response, field), *words)
    assert not SmtpAccount.objects.filter(owner=owner).exists()
    page = html.unescape(response.content.decode())
    assert "Work mail" in page or bad.get("label") == ""  # what was typed comes back
    assert "app-password-1" not in page  # …except the secret, never rendered back


@pytest.mark.parametrize(("bad", "field", "words"), BAD)
def test_it_refuses_a_bad_setting_and_keeps_the_working_account(
    bad, field, words, owner_client, account
):
    before = {f.name: getattr(account, f.name) for f in SmtpAccount._meta.concrete_fields}
    response = owner_client.post(f"/accounts/{account.pk}/edit/", _data(bad))
    assert response.status_code == 400
    assert_clear_error(_field_errors(response, field), *words)
    account.refresh_from_db()
    assert {f.name: getattr(account, f.name) for f in SmtpAccount._meta.concrete_fields} == before


def test_it_accepts_a_real_ca_certificate(owner, owner_client):
    """The control case: a PEM certificate is taken, so the refusals above are about the
    input, not the field."""
    response = owner_client.post("/accounts/new/", _data({"ca_certificate": _ca_pem()}))
    assert response.status_code == 302
    assert SmtpAccount.objects.get(owner=owner).ca_certificate.startswith("-----BEGIN CERT")
