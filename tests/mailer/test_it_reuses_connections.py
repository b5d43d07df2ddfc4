import time_machine
from django.utils import timezone

from mailer import delivery
from mailer.models import DeliveryAttempt
from tests.mailer.base import send


def test_it_sends_a_burst_over_one_connection(owner, account, server):
    ids = [send(owner, account, subject=f"n{i}").pk for i in range(10)]
    assert [delivery.deliver(pk) for pk in ids] == ["sent"] * 10
    assert server.connections == 1 and len(server.received) == 10
    assert DeliveryAttempt.objects.filter(connection_reused=True).count() == 9
    # Each attempt keeps only its own part of the transcript.
    last = DeliveryAttempt.objects.get(message_id=ids[-1])
    assert last.transcript.count("MAIL FROM") == 1


def test_it_reconnects_after_the_account_settings_change(owner, account, server):
    assert delivery.deliver(send(owner, account).pk) == "sent"
    account.verify_tls = False
    account.username = "changed"
    account.save()
    assert delivery.deliver(send(owner, account).pk) == "sent"
    assert server.connections == 2


def test_it_reconnects_after_the_idle_time(owner, account, server, settings):
    settings.MAILROOM_CONNECTION_IDLE_SECONDS = 0.0
    assert delivery.deliver(send(owner, account).pk) == "sent"
    assert delivery.deliver(send(owner, account).pk) == "sent"
    assert server.connections == 2


def test_it_reconnects_when_the_cached_connection_died(owner, account, server):
    assert delivery.deliver(send(owner, account).pk) == "sent"
    # Cut the cached connection under the cache's feet: NOOP fails, a new one is opened.
    cached = delivery.connections._conns[account.pk].client
    cached._sock.close()
    with time_machine.travel(timezone.now(), tick=True):
        assert delivery.deliver(send(owner, account).pk) == "sent"
    assert server.connections == 2



def _count_noops(client) -> list:
    """A spy on the real client's NOOP (the server's reply still decides)."""
    calls, real = [], client.noop
    client.noop = lambda: calls.append(1) or real()
    return calls


def test_it_skips_the_noop_for_a_connection_used_a_moment_ago(owner, account, server):
    assert delivery.deliver(send(owner, account).pk) == "sent"
    noops = _count_noops(delivery.connections._conns[account.pk].client)
    assert delivery.deliver(send(owner, account).pk) == "sent"
    assert noops == []
    assert DeliveryAttempt.objects.order_by("pk").last().connection_reused
    assert server.connections == 1


def test_it_checks_with_noop_a_connection_idle_for_a_while(owner, account, server, settings):
    settings.MAILROOM_NOOP_AFTER_SECONDS = 0.0
    assert delivery.deliver(send(owner, account).pk) == "sent"
    noops = _count_noops(delivery.connections._conns[account.pk].client)
    assert delivery.deliver(send(owner, account).pk) == "sent"
    assert noops == [1] and server.connections == 1


def test_it_sends_on_a_new_connection_when_the_unchecked_one_was_closed(owner, account, server):
    first = send(owner, account)
    assert delivery.deliver(first.pk) == "sent"
    server.handler.close_at("mail", times=1)  # the server hangs up when the next MAIL comes
    msg = send(owner, account)
    assert delivery.deliver(msg.pk) == "sent"  # not deferred: nothing of the data had left
    assert server.connections == 2
    assert server.per_message_id() == {first.message_id: 1, msg.message_id: 1}
    assert DeliveryAttempt.objects.get(message=msg).connection_reused is False


def test_an_edit_mid_batch_retires_the_cached_connection(owner, smtp_server_factory):
    """A batch is claimed with the account as it was; the password is changed after its
    first message and the login method after its second. Each next message logs in anew,
    with the new settings, instead of going out on the connection opened with the old."""
    from mailer.models import SmtpAccount
    from tests.mailer.base import make_account

    accounts = {"alice": "old secret"}
    server = smtp_server_factory(accounts=accounts, auth_require_tls=False)
    account = make_account(owner, server, auth_mechanism="plain", username="alice",
                           secret="old secret", allow_plaintext_auth=True)
    for i in range(3):
        send(owner, account, subject=f"n{i}", hold_seconds=0)
    batch = delivery.claim_batch(account.pk, limit=10)
    assert len(batch) == 3
    outcomes = [delivery.deliver_claimed(*batch[0])]

    edited = SmtpAccount.objects.get(pk=account.pk)  # another process's edit (the web page)
    edited.set_secret("new secret")
    edited.save()
    accounts["alice"] = "new secret"  # the server now takes only the new one
    outcomes.append(delivery.deliver_claimed(*batch[1]))

    edited.auth_mechanism = "login"
    edited.save()
    outcomes.append(delivery.deliver_claimed(*batch[2]))

    assert outcomes == ["sent"] * 3
    assert server.handler.login_attempts == [("PLAIN", "alice"), ("PLAIN", "alice"),
                                             ("LOGIN", "alice")]
    reused = DeliveryAttempt.objects.order_by("pk").values_list("connection_reused", flat=True)
    assert list(reused) == [False, False, False]


def test_an_edit_during_a_batch_is_used_from_the_next_message_not_yet_begun(
        owner, smtp_server_factory):
    """In a batch, each message's settings are read when its connection is taken from the
    cache. The password is changed while message 2 is on the wire (the moment message 1's
    record is written, with message 2's end-of-data mark): message 2 goes out on the
    connection it began on, and message 3 logs in anew with the new password."""
    from django.db import connection

    from mailer.models import SmtpAccount
    from tests.mailer.base import make_account

    accounts = {"alice": "old secret"}
    server = smtp_server_factory(accounts=accounts, auth_require_tls=False)
    account = make_account(owner, server, auth_mechanism="plain", username="alice",
                           secret="old secret", allow_plaintext_auth=True)
    ids = [send(owner, account, subject=f"n{i}").pk for i in range(3)]
    editing = False

    def edit_at_the_first_record(execute, sql, params, many, context):
        nonlocal editing
        if not editing and '"finished_at" = ' in sql and accounts["alice"] == "old secret":
            editing = True
            edited = SmtpAccount.objects.get(pk=account.pk)  # another process's edit
            edited.set_secret("new secret")
            edited.save()
            accounts["alice"] = "new secret"
            editing = False
        return execute(sql, params, many, context)

    with connection.execute_wrapper(edit_at_the_first_record):
        assert delivery.drain(ids[0]) == ["sent"] * 3

    assert accounts["alice"] == "new secret"
    assert server.handler.login_attempts == [("PLAIN", "alice"), ("PLAIN", "alice")]
    reused = DeliveryAttempt.objects.order_by("message_id").values_list(
        "connection_reused", flat=True)
    assert list(reused) == [False, True, False]
