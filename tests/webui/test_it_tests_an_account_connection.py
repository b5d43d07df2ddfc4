"""Test connection: the click only records the check and hands it to a worker
(mailer.services.start_check); the worker's step (services.run_check, called here as the
worker calls it) tests against a real loopback server; the page shows the live state, then
the verdict in plain words, the capabilities and the transcript — never the secret.
tests/test_it_keeps_the_web_responsive_during_a_check.py runs it with a real worker."""

from datetime import timedelta

from django.test import override_settings

from mailer import services
from mailer.models import AccountCheck, SmtpAccount
from tests.webui.conftest import SECRET


def _point_at(account, server, **fields):
    SmtpAccount.objects.filter(pk=account.pk).update(
        host=server.host, port=server.port, security="starttls", username="owen",
        ca_certificate=server.ca_pem, **fields)


def _click_and_run(client, account):
    """POST the button, check that nothing was tested in the request, then run the worker's step."""
    response = client.post(f"/accounts/{account.pk}/check/")
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/{account.pk}/#check-result"
    check = AccountCheck.objects.get(account=account)
    assert check.status == "pending"
    account.refresh_from_db()
    assert account.capabilities_seen_at is None  # the request itself connected nowhere
    waiting = client.get(f"/accounts/{account.pk}/").content.decode()
    assert "Waiting for a worker to run the test" in waiting
    assert f'hx-get="/accounts/{account.pk}/check/status/"' in waiting  # the live poll
    services.run_check(check.pk)
    return client.get(f"/accounts/{account.pk}/").content.decode()


def test_it_shows_the_verdict_capabilities_and_transcript(
    owner_client, account, smtp_server_factory
):
    server = smtp_server_factory(security="starttls", accounts={"owen": SECRET})
    _point_at(account, server)
    body = _click_and_run(owner_client, account)
    assert "It works." in body
    assert "PIPELINING" in body and "32.0 MB" in body  # capabilities
    assert "C: STARTTLS" in body and "C: AUTH" in body  # the redacted transcript
    assert SECRET not in body
    assert "check/status/" not in body  # finished: the poll stops
    account.refresh_from_db()
    assert account.capabilities and account.capabilities_seen_at


def test_it_says_in_plain_words_why_the_login_failed(owner_client, account, smtp_server_factory):
    server = smtp_server_factory(security="starttls", accounts={"owen": "another-password"})
    _point_at(account, server)
    body = _click_and_run(owner_client, account)
    assert "It did not work." in body
    assert "The server refused the username or password." in body
    assert "535 5.7.8" in body
    # A check neither pauses the account nor retries: the page does not say it does.
    assert "paused this account" not in body and "try again later" not in body
    assert SECRET not in body


def test_the_live_part_answers_alone_and_stops_polling_when_done(
    owner_client, account, smtp_server_factory
):
    server = smtp_server_factory(security="starttls", accounts={"owen": SECRET})
    _point_at(account, server)
    owner_client.post(f"/accounts/{account.pk}/check/")
    part = owner_client.get(f"/accounts/{account.pk}/check/status/").content.decode()
    assert 'id="check-result"' in part
    assert "every 1s" in part
    services.run_check(AccountCheck.objects.get(account=account).pk)
    part = owner_client.get(f"/accounts/{account.pk}/check/status/").content.decode()
    assert "It works." in part and "every 1s" not in part


def test_a_second_click_while_one_waits_starts_no_other(owner_client, account):
    owner_client.post(f"/accounts/{account.pk}/check/")
    owner_client.post(f"/accounts/{account.pk}/check/")
    assert AccountCheck.objects.filter(account=account).count() == 1


@override_settings(MAILROOM_CHECK_DEADLINE_SECONDS=5)
def test_a_check_no_worker_took_says_so_after_the_deadline(owner_client, account):
    owner_client.post(f"/accounts/{account.pk}/check/")
    check = AccountCheck.objects.get(account=account)
    AccountCheck.objects.filter(pk=check.pk).update(
        created_at=check.created_at - timedelta(seconds=6)
    )
    body = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "It did not work." in body and "No worker started the test within 5 s" in body
    assert "check/status/" not in body
    # A worker that comes late does not run it any more.
    assert services.run_check(check.pk) is None
    check.refresh_from_db()
    assert check.status == "expired"


@override_settings(MAILROOM_CHECKS_PER_MINUTE=2)
def test_it_limits_checks_per_user_in_plain_words(owner, owner_client, account):
    for _ in range(2):
        owner_client.post(f"/accounts/{account.pk}/check/")
        AccountCheck.objects.filter(account=account).update(status="done", ok=True, result={})
    body = owner_client.post(f"/accounts/{account.pk}/check/", follow=True).content.decode()
    assert AccountCheck.objects.filter(account=account).count() == 2
    assert "the most Mailroom allows. Wait" in body
    # Test messages count against the same limit.
    body = owner_client.post(f"/accounts/{account.pk}/test-message/", follow=True).content.decode()
    assert "the most Mailroom allows" in body


def test_it_signs_out(owner_client):
    response = owner_client.post("/logout/")
    assert response.status_code == 302
    assert owner_client.get("/").status_code == 302


def test_the_poll_that_sees_the_end_reloads_the_page(owner_client, account, smtp_server_factory):
    server = smtp_server_factory(security="starttls", accounts={"owen": SECRET})
    _point_at(account, server)
    owner_client.post(f"/accounts/{account.pk}/check/")
    url = f"/accounts/{account.pk}/check/status/"
    assert "HX-Refresh" not in owner_client.get(url, headers={"HX-Request": "true"})
    services.run_check(AccountCheck.objects.get(account=account).pk)
    # The check changed the rest of the page too (capabilities, a lifted pause).
    assert owner_client.get(url, headers={"HX-Request": "true"})["HX-Refresh"] == "true"


def test_a_success_from_before_a_pause_is_not_shown_under_the_pause(owner_client, account):
    from django.utils import timezone

    owner_client.post(f"/accounts/{account.pk}/check/")
    AccountCheck.objects.filter(account=account).update(
        status="done", ok=True, finished_at=timezone.now() - timedelta(minutes=5),
        result={"verdict": "Connected. The account is ready to send."})
    SmtpAccount.objects.filter(pk=account.pk).update(
        paused_at=timezone.now(), paused_reason="The server refused the username or password.")
    body = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "refused the username" in body and "It works." not in body
