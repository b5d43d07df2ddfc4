"""Whatever a user, a file name or a server puts into a field shows as text: a subject or
a file name of ``<script>`` is never markup on any page."""

from urllib.parse import quote

from django.utils import timezone

from mailer.models import AccountCheck, OutboxMessage, Recipient, SmtpAccount
from tests.webui.conftest import add_attempt, make_account, make_draft, make_message

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _assert_escaped(response):
    body = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in body
    assert "<img src=x onerror" not in body
    assert "&lt;script&gt;alert(" in body


def test_it_escapes_every_displayed_field(owner, owner_client):
    account = make_account(owner, label=f"Acct {XSS}", from_name=f"Name {XSS}", is_default=True)
    SmtpAccount.objects.filter(pk=account.pk).update(
        paused_at=timezone.now(), paused_reason=f"535 {XSS}",
        capabilities={"esmtp": True, "extensions": {XSS: XSS}, "auth": [XSS], "size": 1000000},
        capabilities_seen_at=timezone.now(),
    )
    draft = make_draft(owner, account, subject=f"Draft {XSS}", to="a@example.org",
                       files=[(f"{XSS}.txt", b"data")])
    message = make_message(
        owner, account, subject=f"Subj {XSS}", body_text=f"Body {XSS}",
        to=f'"Ann {XSS}" <ann@example.org>', files=[(f"file {XSS}.pdf", b"%PDF")],
    )
    OutboxMessage.objects.filter(pk=message.pk).update(
        status="failed", last_error=f"550 {XSS}", wait_reason=XSS,
    )
    Recipient.objects.filter(message=message).update(
        status="failed",
        code=550,
        enhanced="5.1.1",
        text=f"No such user {XSS}",
        reason=f"Why {XSS}",
    )
    add_attempt(
        message,
        reply_code=550,
        reply_enhanced="5.1.1",
        reply_text=f"Nope {XSS}",
        transcript=f"S: 220 hello {XSS}\nC: EHLO x",
    )
    for url in [
        "/",
        "/accounts/",
        f"/accounts/{account.pk}/",
        f"/accounts/{account.pk}/edit/",
        "/drafts/",
        f"/drafts/{draft.pk}/",
        "/compose/",
        "/outbox/",
        "/outbox/?tab=failed",
        f"/messages/{message.pk}/",
        f"/messages/{message.pk}/status/",
        f"/outbox/?q={quote(XSS)}&date_from=x",
        f"/outbox/live/?ids={message.pk}",
    ]:
        _assert_escaped(owner_client.get(url))


def test_it_escapes_a_connection_test_transcript(owner_client, account, client_for):
    AccountCheck.objects.create(
        owner=account.owner, account=account, status="done", ok=False,
        finished_at=timezone.now(), result={
            "ok": False, "verdict": f"Refused {XSS}", "capabilities": None,
            "transcript": [f"S: 554 {XSS}"], "error": f"err {XSS}",
        })
    _assert_escaped(owner_client.get(f"/accounts/{account.pk}/"))


def test_it_removes_scripts_from_the_html_body(owner, owner_client, account):
    message = make_message(owner, account, body_html=(
        '<p onclick="alert(1)">Hi</p><script>alert(2)</script>'
        '<img src="https://tracker.example/pixel.gif"><a href="javascript:alert(3)">x</a>'))
    response = owner_client.get(f"/messages/{message.pk}/body.html")
    body = response.content.decode()
    assert "<p>Hi</p>" in body
    assert "<script" not in body and "onclick" not in body and "javascript:" not in body
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "img-src data:" in policy and "sandbox" in policy
    assert "script-src" not in policy  # falls back to default-src 'none': no script at all
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    page = owner_client.get(f"/messages/{message.pk}/").content.decode()
    assert '<iframe class="body-html"' in page and "sandbox" in page
