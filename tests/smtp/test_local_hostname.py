"""The EHLO name: configurable; by default the FQDN if it has a dot, else an address literal."""

from __future__ import annotations

import socket

from mailer.smtp import SMTPClient
from mailer.smtp import client as client_module


def test_it_uses_the_configured_name(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs(local_hostname="mailroom.example.org")) as c:
        assert c.local_hostname == "mailroom.example.org"


def test_it_defaults_to_the_fqdn_or_an_address_literal(smtp_server):
    with SMTPClient(**smtp_server.client_kwargs()) as c:
        fqdn = socket.getfqdn()
        if "." in fqdn:
            assert c.local_hostname == fqdn
        else:
            assert c.local_hostname == "[127.0.0.1]"


def test_it_uses_an_address_literal_without_a_dotted_fqdn(smtp_server, monkeypatch):
    # getfqdn depends on the machine's resolver; pin it to a bare name for this case.
    client_module._fqdn.cache_clear()
    monkeypatch.setattr(client_module.socket, "getfqdn", lambda: "localhost")
    try:
        with SMTPClient(**smtp_server.client_kwargs(transcript=True)) as c:
            assert c.local_hostname == "[127.0.0.1]"
            assert "C: EHLO [127.0.0.1]" in c.transcript
    finally:
        client_module._fqdn.cache_clear()
