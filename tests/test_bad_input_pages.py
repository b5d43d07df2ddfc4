"""Bad input on the pages, table-driven: markup in every field a page displays shows as
text; a hostile HTML body is defanged in the preview; another user's object id is a 404 on
every URL and changes nothing; a form posted without its CSRF token is a 403 and changes
nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.test import Client
from django.utils import timezone

from mailer.models import DeliveryAttempt, Draft, OutboxMessage, Recipient, SmtpAccount
from tests.bad_input import *  # noqa: F403  (the fixtures: owner, owner_client, account…)
from tests.bad_input import fingerprint
from tests.webui.conftest import add_attempt, make_draft, make_message
from tests.webui.urls import object_get_urls, object_post_urls, post_only_urls

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _plant(owner, account, where: str):
    """Put XSS into one field; return the pages that display it."""
    a = account
    if where in ("label", "from_name", "host", "username"):
        SmtpAccount.objects.filter(pk=a.pk).update(**{where: f"{where} {XSS}"})
        return ["/accounts/", f"/accounts/{a.pk}/", f"/accounts/{a.pk}/edit/", "/compose/"]
    if where == "paused_reason":
        SmtpAccount.objects.filter(pk=a.pk).update(paused_at=timezone.now(),
                                                   paused_reason=f"535 {XSS}")
        return ["/accounts/", f"/accounts/{a.pk}/", "/"]
    if where == "capabilities":
        SmtpAccount.objects.filter(pk=a.pk).update(
            capabilities={"esmtp": True, "extensions": {XSS: XSS}, "auth": [XSS], "size": 1},
            capabilities_seen_at=timezone.now())
        return [f"/accounts/{a.pk}/"]
    if where in ("draft_subject", "draft_to", "draft_file"):
        field = where.removeprefix("draft_")
        draft = make_draft(owner, a, **({"files": [(f"{XSS}.txt", b"x")]} if field == "file"
                                        else {field: f"{field} {XSS}"}))
        return ["/drafts/", f"/drafts/{draft.pk}/"]
    fields = {"subject": f"Subj {XSS}", "to": f'"Ann {XSS}" <ann@example.org>',
              "file": None, "body_text": f"Body {XSS}"}
    key = where.removeprefix("message_")
    extra = {"files": [(f"file {XSS}.pdf", b"%PDF")]} if key == "file" else (
        {key: fields[key]} if key in fields else {})
    message = make_message(owner, a, **extra)
    m = message.pk
    if key in ("last_error", "wait_reason"):
        status = "failed" if key == "last_error" else "deferred"
        OutboxMessage.objects.filter(pk=m).update(status=status, **{key: f"450 {XSS}"})
    elif key == "recipient_text":
        Recipient.objects.filter(message=message).update(status="failed", code=550,
                                                         text=f"No such user {XSS}")
    elif key in ("reply_text", "transcript"):
        add_attempt(message, reply_code=550, **{key: f"S: 550 {XSS}"})
    return ["/", "/outbox/", "/outbox/?tab=all", f"/messages/{m}/",
            f"/messages/{m}/status/", f"/outbox/live/?ids={m}"]


DISPLAYED = ["label", "from_name", "host", "username", "paused_reason", "capabilities",
             "draft_subject", "draft_to", "draft_file", "message_subject", "message_to",
             "message_file", "message_body_text", "message_last_error", "message_wait_reason",
             "message_recipient_text", "message_reply_text", "message_transcript"]


@pytest.mark.parametrize("where", DISPLAYED)
def test_it_shows_markup_in_a_field_as_text(where, owner, owner_client, account):
    shown = 0
    for url in _plant(owner, account, where):
        response = owner_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert "<script>alert" not in body and "<img src=x onerror" not in body, url
        shown += "&lt;script&gt;alert(" in body
    assert shown, "no page showed the field at all"


HOSTILE_HTML = [
    pytest.param("<script>alert(1)</script>", ("<script",), id="script"),
    pytest.param('<img src=x onerror="alert(1)">', ("onerror",), id="event-handler"),
    pytest.param('<a href="javascript:alert(1)">click</a>', ("javascript:",), id="javascript-url"),
    pytest.param('<svg onload="alert(1)"><circle r="1"/></svg>', ("onload",), id="svg-onload"),
    pytest.param('<iframe src="https://evil.example/"></iframe>', ("<iframe",), id="iframe"),
    pytest.param('<form action="https://evil.example/"><input name="password"></form>',
                 ("<form", "<input"), id="phishing-form"),
    pytest.param('<meta http-equiv="refresh" content="0;url=https://evil.example/">',
                 ("http-equiv",), id="meta-refresh"),
    pytest.param('<base href="https://evil.example/">', ("evil.example",), id="base-href"),
    pytest.param('<object data="https://evil.example/x.swf"></object><embed src="x.swf">',
                 ("<object", "<embed"), id="object-embed"),
    pytest.param('<style>body{background:url(https://evil.example/track)}</style>',
                 ("evil.example",), id="style-remote-url"),
    pytest.param('<div style="background:url(https://evil.example/t)">x</div>',
                 ("evil.example",), id="inline-style-remote-url"),
]


@pytest.mark.parametrize(("hostile", "gone"), HOSTILE_HTML)
def test_it_defangs_a_hostile_html_body_in_the_preview(hostile, gone, owner, owner_client,
                                                       account):
    message = make_message(owner, account, body_html=f"<p>Hello there</p>{hostile}")
    response = owner_client.get(f"/messages/{message.pk}/body.html")
    assert response.status_code == 200
    body = response.content.decode()
    for word in gone:
        assert word not in body.lower(), word
    assert "Hello there" in body  # the harmless part is still shown
    csp = response["Content-Security-Policy"]
    assert "sandbox" in csp and "script-src" not in csp.replace("script-src 'none'", "")
    # Remote images (tracking pixels) never load: only inline data: images.
    img = next(d for d in csp.split(";") if d.strip().startswith(("img-src", "default-src")))
    assert "http" not in img and "*" not in img


def test_it_keeps_a_remote_image_from_loading(owner, owner_client, account):
    message = make_message(owner, account,
                           body_html='<p>Hi</p><img src="https://tracker.example/p.gif">')
    response = owner_client.get(f"/messages/{message.pk}/body.html")
    csp = dict(d.strip().split(" ", 1) for d in response["Content-Security-Policy"].split(";")
               if " " in d.strip())
    assert "https:" not in csp.get("img-src", "'none'") and "*" not in csp.get("img-src", "")
    assert "tracker.example" not in csp.get("img-src", "")


# --- another user's objects --------------------------------------------------------------

_MARK = SimpleNamespace(pk="{a}"), SimpleNamespace(pk="{d}"), SimpleNamespace(pk="{m}")
GET_URLS = object_get_urls(*_MARK)
POST_URLS = object_post_urls(*_MARK)


@pytest.fixture
def owned(owner, account):
    draft = make_draft(owner, account, files=[("notes.txt", b"some notes\n")])
    message = make_message(owner, account, files=[("notes.txt", b"some notes\n")])
    return account, draft, message


def _state(account, draft, message) -> tuple:
    account.refresh_from_db()
    message.refresh_from_db()
    return (
        {f.name: getattr(account, f.name) for f in SmtpAccount._meta.concrete_fields},
        fingerprint(draft),
        (message.status, message.attempts, message.subject,
         sorted(message.recipients.values_list("address", "status"))),
        DeliveryAttempt.objects.count(),
    )


def _url(template: str, account, draft, message) -> str:
    return template.format(a=account.pk, d=draft.pk, m=message.pk)


@pytest.mark.parametrize("template", GET_URLS)
def test_it_answers_404_for_another_users_object(template, stranger_client, owned):
    before = _state(*owned)
    assert stranger_client.get(_url(template, *owned)).status_code == 404
    assert _state(*owned) == before


@pytest.mark.parametrize("template", POST_URLS)
def test_it_answers_404_and_changes_nothing_when_posting_to_another_users_object(
    template, stranger_client, owned
):
    before = _state(*owned)
    data = {"subject": "hijacked", "label": "hijacked", "to": "eve@example.net",
            "action": "send", "host": "evil.example", "port": "25", "security": "none"}
    assert stranger_client.post(_url(template, *owned), data).status_code == 404
    assert _state(*owned) == before
    assert not Draft.objects.filter(subject="hijacked").exists()


# Ids of another user's objects hidden in form fields and query strings, not in the path.
SMUGGLED = [
    pytest.param(
        "post",
        "/compose/",
        {"draft": "{d}", "subject": "hijacked", "action": "save"},
        404,
        id="compose-with-their-draft-id",
    ),
    pytest.param(
        "post",
        "/compose/autosave/",
        {"draft": "{d}", "subject": "hijacked"},
        404,
        id="autosave-into-their-draft",
    ),
    pytest.param(
        "post",
        "/compose/",
        {"account": "{a}", "to": "x@example.org", "subject": "hijacked", "action": "send"},
        400,
        id="send-through-their-account",
    ),
    pytest.param(
        "get", "/outbox/?account={a}", {}, (200, 400), id="outbox-filtered-by-their-account"
    ),
    pytest.param("get", "/outbox/?q=Quarterly", {}, 200, id="outbox-search-for-their-subject"),
]


@pytest.mark.parametrize(("method", "template", "data", "status"), SMUGGLED)
def test_it_ignores_another_users_ids_in_forms_and_queries(
    method, template, data, status, stranger, stranger_client, owned
):
    before = _state(*owned)
    fill = {k: _url(v, *owned) for k, v in data.items()}
    response = getattr(stranger_client, method)(_url(template, *owned), fill)
    assert response.status_code in (status if isinstance(status, tuple) else (status,))
    assert "Quarterly report" not in response.content.decode()  # nothing of theirs is shown
    assert _state(*owned) == before
    assert not OutboxMessage.objects.filter(owner=stranger).exists()
    assert not Draft.objects.filter(subject="hijacked").exclude(owner=stranger).exists()


# --- forms without their CSRF token ------------------------------------------------------

CSRF_URLS = sorted(set(post_only_urls(*_MARK)) | set(POST_URLS)
                   | {"/compose/", "/accounts/new/", "/login/"})


@pytest.mark.parametrize("template", CSRF_URLS)
def test_it_refuses_a_post_without_its_csrf_token(template, owner, owned):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    before = _state(*owned)
    response = client.post(_url(template, *owned), {"subject": "forged", "label": "forged",
                                                    "to": "eve@example.net", "action": "send"})
    assert response.status_code == 403
    assert b"This form has expired" in response.content  # plain words, not Django's debug page
    assert _state(*owned) == before
    assert not Draft.objects.filter(subject="forged").exists()
    assert not SmtpAccount.objects.filter(label="forged").exists()
