"""An account's IMAP side in the web UI: set up from the provider's preset, saved with a
write-only password, tested by "Test connection" against a real IMAP server (Dovecot,
tests/imap_server.py) — its capabilities and folders shown, the Sent folder found — and
turned off again. Another user can reach none of it."""

from __future__ import annotations

from mailer import services
from mailer.models import AccountCheck, ImapSettings, SmtpAccount
from tests.webui.conftest import SECRET


def _imap_post(dovecot, **fields):
    data = {"host": dovecot.host, "port": dovecot.tls_port, "security": "tls",
            "username": "owen", "secret": dovecot.users["owen"], "save_to_sent": "on",
            "sent_folder": "", "track_reports": "on", "reports_folder": ""}
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def test_the_form_starts_from_the_providers_preset(owner_client, owner):
    for smtp_host, imap_host, saves in (("smtp.gmail.com", "imap.gmail.com", False),
                                        ("smtp.office365.com", "outlook.office365.com", True),
                                        ("smtp.fastmail.com", "imap.fastmail.com", True)):
        account = SmtpAccount.objects.create(owner=owner, label=smtp_host, host=smtp_host,
                                             from_address="owen@example.com")
        page = owner_client.get(f"/accounts/{account.pk}/imap/").content.decode()
        assert f'value="{imap_host}"' in page and 'value="993"' in page
        box = page.split('name="save_to_sent"')[1].split(">")[0]
        assert (" checked" in box) is saves, smtp_host
    plain = SmtpAccount.objects.create(owner=owner, label="own", host="mail.example.net",
                                       from_address="owen@example.com")
    page = owner_client.get(f"/accounts/{plain.pk}/imap/").content.decode()
    assert 'name="host"' in page and "mail.example.net" not in page.split('name="host"')[1][:80]


def test_it_saves_tests_and_shows_folders_and_capabilities(owner_client, account, dovecot):
    SmtpAccount.objects.filter(pk=account.pk).update(ca_certificate=dovecot.ca_pem)
    response = owner_client.post(f"/accounts/{account.pk}/imap/", _imap_post(dovecot))
    assert response.status_code == 302, response.content.decode()
    imap = ImapSettings.objects.get(account=account)
    assert imap.get_secret() == dovecot.users["owen"]
    assert dovecot.users["owen"] not in imap.secret_encrypted  # encrypted at rest
    page = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "IMAP: Sent folder and delivery reports" in page
    assert f"{dovecot.host}:{dovecot.tls_port}" in page and "its own password" in page
    assert dovecot.users["owen"] not in page
    # Test connection: the SMTP side fails (nothing listens there), the IMAP side is
    # checked all the same, in the worker's step.
    owner_client.post(f"/accounts/{account.pk}/check/")
    services.run_check(AccountCheck.objects.get(account=account).pk)
    page = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "IMAP" in page and "sent mail is saved to “Sent”" in page
    caps = page.split("data-imap-caps>")[1].split("</ul>")[0]
    assert "<li>UIDPLUS</li>" in caps and "<li>SPECIAL-USE</li>" in caps
    folders = page.split("data-imap-folders>")[1].split("</ul>")[0]
    assert "<li>Sent (Sent)</li>" in folders and "INBOX" in folders
    assert dovecot.users["owen"] not in page and SECRET not in page
    imap.refresh_from_db()
    assert "Sent" in imap.folders and imap.checked_at
    # The form now offers the folders it saw; the saved password is never sent back.
    form = owner_client.get(f"/accounts/{account.pk}/imap/").content.decode()
    assert 'list="imap-folders"' in form and '<option value="Sent">' in form
    assert dovecot.users["owen"] not in form


def test_a_refused_imap_login_is_said_in_plain_words(owner_client, account, dovecot):
    SmtpAccount.objects.filter(pk=account.pk).update(ca_certificate=dovecot.ca_pem)
    owner_client.post(f"/accounts/{account.pk}/imap/", _imap_post(dovecot, secret="wrong"))
    owner_client.post(f"/accounts/{account.pk}/check/")
    check = services.run_check(AccountCheck.objects.get(account=account).pk)
    assert check.result["imap"]["ok"] is False
    page = owner_client.get(f"/accounts/{account.pk}/").content.decode()
    assert "refused the IMAP login. Check the IMAP username and password" in page
    assert 'data-imap-check="failed"' in page and "wrong" not in page


def test_a_blank_password_keeps_the_saved_one_and_forget_uses_the_smtp_login(
    owner_client, account, dovecot
):
    url = f"/accounts/{account.pk}/imap/"
    owner_client.post(url, _imap_post(dovecot))
    owner_client.post(url, _imap_post(dovecot, secret=""))
    assert ImapSettings.objects.get(account=account).get_secret() == dovecot.users["owen"]
    owner_client.post(url, _imap_post(dovecot, secret="", forget_secret="on"))
    assert ImapSettings.objects.get(account=account).get_secret() == ""


def test_changing_the_mailbox_starts_reading_reports_afresh(owner_client, account, dovecot):
    url = f"/accounts/{account.pk}/imap/"
    owner_client.post(url, _imap_post(dovecot))
    ImapSettings.objects.filter(account=account).update(cursors={"INBOX": [1, 40]})
    owner_client.post(url, _imap_post(dovecot, save_to_sent=None))  # same mailbox
    assert ImapSettings.objects.get(account=account).cursors == {"INBOX": [1, 40]}
    owner_client.post(url, _imap_post(dovecot, username="carol", secret=""))
    assert ImapSettings.objects.get(account=account).cursors == {}


def test_bad_input_is_refused_in_plain_words_and_the_password_asked_again(
    owner_client, account, dovecot
):
    response = owner_client.post(f"/accounts/{account.pk}/imap/",
                                 _imap_post(dovecot, host="bad host!", port="0"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "Type the password again" in page and dovecot.users["owen"] not in page
    assert not ImapSettings.objects.filter(account=account).exists()


def test_turning_it_off_keeps_the_account(owner_client, account, dovecot):
    owner_client.post(f"/accounts/{account.pk}/imap/", _imap_post(dovecot))
    page = owner_client.get(f"/accounts/{account.pk}/imap/").content.decode()
    assert "Turn IMAP off" in page
    response = owner_client.post(f"/accounts/{account.pk}/imap/remove/")
    assert response.status_code == 302
    assert not ImapSettings.objects.filter(account=account).exists()
    assert SmtpAccount.objects.filter(pk=account.pk).exists()
    assert "Set up IMAP" in owner_client.get(f"/accounts/{account.pk}/").content.decode()


def test_another_user_reaches_none_of_it(stranger_client, account, dovecot):
    assert stranger_client.get(f"/accounts/{account.pk}/imap/").status_code == 404
    assert stranger_client.post(f"/accounts/{account.pk}/imap/",
                                _imap_post(dovecot)).status_code == 404
    assert stranger_client.post(f"/accounts/{account.pk}/imap/remove/").status_code == 404
    assert not ImapSettings.objects.filter(account=account).exists()
