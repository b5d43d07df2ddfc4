"""The default account (mailer.services.add_account / delete_account / set_default, used by
the web form and ``manage.py smtpaccount``): the first account becomes the default, and the
first real account takes over from the Local sink, so that a new user's first real mail
never goes to the sink by surprise; deleting the default passes it to a real account first."""

from io import StringIO

import pytest
from django.core.management import call_command

from mailer import services
from mailer.management.commands.up import ensure_local_sink_account
from mailer.models import SmtpAccount
from tests.mailer.base import make_account, send


def _new(owner, label, **fields) -> SmtpAccount:
    return services.add_account(owner, SmtpAccount(
        label=label, from_address="owner@example.com", host="smtp.example.com", **fields))


def _default(owner) -> list[str]:
    return list(
        SmtpAccount.objects.filter(owner=owner, is_default=True).values_list("label", flat=True)
    )


def test_the_first_account_becomes_the_default(owner):
    _new(owner, "Work")
    _new(owner, "Home")
    assert _default(owner) == ["Work"]


def test_the_first_real_account_takes_over_from_the_local_sink(owner):
    sink, _ = ensure_local_sink_account(owner, "127.0.0.1", 1025)
    assert sink.is_local_sink and _default(owner) == ["Local sink"]
    _new(owner, "Work")
    assert _default(owner) == ["Work"]
    _new(owner, "Home")  # a second real account leaves the choice alone
    assert _default(owner) == ["Work"]


def test_the_command_line_makes_the_same_choice(owner):
    ensure_local_sink_account(owner, "127.0.0.1", 1025)
    out = StringIO()
    call_command("smtpaccount", "add", "--user", "owner", "--label", "Work", "--host",
                 "smtp.example.com", "--from-address", "owner@example.com", stdout=out)
    assert _default(owner) == ["Work"]
    assert "the default account" in out.getvalue()
    call_command("smtpaccount", "add", "--user", "owner", "--label", "Home", "--host",
                 "smtp.example.com", "--from-address", "owner@example.com", "--default",
                 stdout=StringIO())
    assert _default(owner) == ["Home"]


def test_asking_for_the_default_wins(owner):
    _new(owner, "Work")
    _new(owner, "Home", is_default=False)
    services.add_account(owner, SmtpAccount(label="Other", from_address="o@example.com",
                                            host="smtp.example.com"), make_default=True)
    assert _default(owner) == ["Other"]


def test_deleting_the_default_passes_it_to_a_real_account_before_the_sink(owner):
    ensure_local_sink_account(owner, "127.0.0.1", 1025)
    work = _new(owner, "Work")
    _new(owner, "Zeta")  # sorts after "Local sink", still chosen before it
    assert services.delete_account(owner, work).label == "Zeta"
    assert _default(owner) == ["Zeta"]


def test_deleting_the_last_real_account_leaves_the_sink_as_default(owner):
    ensure_local_sink_account(owner, "127.0.0.1", 1025)
    work = _new(owner, "Work")
    assert services.delete_account(owner, work).label == "Local sink"
    assert _default(owner) == ["Local sink"]


def test_deleting_another_account_keeps_the_default(owner):
    _new(owner, "Work")
    home = _new(owner, "Home")
    assert services.delete_account(owner, home) is None
    assert _default(owner) == ["Work"]


def test_an_account_with_waiting_mail_is_not_deleted(owner):
    account = make_account(owner)
    send(owner, account)
    with pytest.raises(services.ActionNotAllowed, match="waiting to be sent"):
        services.delete_account(owner, account)
    assert SmtpAccount.objects.filter(pk=account.pk).exists()


def test_another_owners_account_is_not_found(owner, stranger):
    account = make_account(stranger)
    for action in (services.delete_account, services.set_default):
        with pytest.raises(services.NotFound):
            action(owner, account)


def test_the_migration_marks_the_sinks_up_made_before_the_flag(owner):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("mailer.migrations.0007_account_checks")
    old = make_account(owner, label="Local sink", host="127.0.0.1", port=1025)
    real = make_account(owner, label="Work", host="127.0.0.1", port=1025)
    SmtpAccount.objects.update(is_local_sink=False)
    migration.mark_local_sinks(apps, None)
    assert SmtpAccount.objects.get(pk=old.pk).is_local_sink
    assert not SmtpAccount.objects.get(pk=real.pk).is_local_sink
