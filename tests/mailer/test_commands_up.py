"""``manage.py up`` refusing to start, in plain words, before it starts anything (the
whole run is tests/test_up.py)."""

from __future__ import annotations

import io
import socket

import pytest
from django.core.management import CommandError, call_command

from mailer.management.commands.up import ensure_local_sink_account, ensure_login
from mailer.models import SmtpAccount
from tests.mailer.base import make_user


def test_it_refuses_to_run_in_production(settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="docker-compose.yml"):
        call_command("up")


def test_it_names_a_busy_port_and_the_option_to_change_it(db):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=f"Port {port} is already in use.*--sink-port"):
            call_command("up", "--port", "0", "--sink-port", str(port))


def test_it_keeps_an_existing_login_and_brings_the_local_sink_up_to_date(db):
    out = io.StringIO()
    owner = make_user("someone")
    assert ensure_login(out) == owner and out.getvalue() == ""  # no new login, no password
    account, created = ensure_local_sink_account(owner, "127.0.0.1", 2525)
    assert created and account.is_default and (account.host, account.port) == ("127.0.0.1", 2525)
    SmtpAccount.objects.filter(pk=account.pk).update(port=1, security="tls")
    again, created = ensure_local_sink_account(owner, "127.0.0.1", 2626)
    assert not created and (again.port, again.security) == (2626, "none")
    assert SmtpAccount.objects.filter(owner=owner).count() == 1
