"""Compose, drafts and attachments.

A POST to the compose page always saves the draft first (fields as typed, uploaded files
attached), then does what was asked: save, remove an attachment, send or schedule. So a
draft that fails validation is kept with everything the user typed, attachments included.
"""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.views.decorators.http import require_POST

from mailer import attachments, precheck, services
from mailer.models import Attachment, Draft, UserPreferences
from webui.forms import AttachmentUploadForm, ComposeForm

TEXT_FIELDS = ("to", "cc", "bcc", "reply_to", "subject", "body_text", "body_html")
# Words that usually mean "there is a file with this mail".
MENTIONS_ATTACHMENT = re.compile(
    r"\b(attach(ed|ment|ments|ing)?|enclosed|see the file)\b", re.IGNORECASE
)


def _get_draft_for_user(request: HttpRequest, pk: int) -> Draft:
    return get_object_or_404(Draft, pk=pk, owner=request.user)


def size_problems(draft: Draft, attachments: list[Attachment]) -> dict[str, list[str]]:
    """Refuse early a message bigger than the server's SIZE (the account's capability
    snapshot), estimated after base64 (a third more). ``send_draft`` checks the built
    message again exactly; this catches it before the message is built."""
    if draft.account is None:
        return {}
    size = precheck.estimated_size(
        len(draft.body_text.encode()) + len(draft.body_html.encode()),
        [a.size for a in attachments],
    )
    found = precheck.problems(draft.account.capabilities, size=size, server=draft.account.host)
    return {"attachments": found["attachments"]} if "attachments" in found else {}


def _save_draft(request: HttpRequest, draft: Draft, form: ComposeForm) -> list[str]:
    """Store what was typed, even if some of it is not valid; return upload problems."""
    if form.is_valid():
        form.save()
    else:
        # Keep the text exactly as typed; only a bad account choice or date is dropped.
        for name in TEXT_FIELDS:
            if name in form.data:
                setattr(draft, name, form.data.get(name, ""))
        draft.delivery_report = form.data.get("delivery_report") in ("on", "true", "1")
        draft.save()
    if form.is_valid() or "send_at" not in form.errors:
        send_at = form.cleaned_data.get("send_at")
        if send_at != draft.send_at:
            draft.send_at = send_at
            draft.save(update_fields=["send_at"])
    problems = []
    for upload in request.FILES.getlist("attachments"):
        check = AttachmentUploadForm(files={"file": upload})
        if check.is_valid():
            add_attachment(draft, upload)
        else:
            problems.extend(check.errors["file"])
    return problems


def add_attachment(draft: Draft, upload) -> Attachment:
    return attachments.add(draft, name=upload.name, content=upload,
                           content_type=upload.content_type, size=upload.size)


def _render_compose(request, form, draft, attachments, status=200, **extra) -> HttpResponse:
    hold = UserPreferences.for_user(request.user).hold_seconds
    return render(request, "webui/compose/compose.html", {
        "form": form,
        "draft": draft if draft.pk else None,
        "attachments": attachments,
        "hold_seconds": hold,
        "has_accounts": form.fields["account"].queryset.exists(),
        **extra,
    }, status=status)


def _bound_copy(request: HttpRequest, draft: Draft) -> ComposeForm:
    data = request.POST.copy()
    data["draft"] = draft.pk
    data.pop("confirm_no_attachment", None)
    return ComposeForm(data, instance=draft, owner=request.user)


@login_required
def compose(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    if pk is None and request.POST.get("draft"):
        pk = _as_int(request.POST["draft"])
    draft = _get_draft_for_user(request, pk) if pk else Draft(owner=request.user)
    if request.method != "POST":
        form = ComposeForm(instance=draft, owner=request.user,
                           initial={"draft": draft.pk, **_prefill(request)})
        return _render_compose(
            request, form, draft, list(draft.attachments.all()) if draft.pk else []
        )

    form = ComposeForm(request.POST, instance=draft, owner=request.user)
    with transaction.atomic():
        upload_problems = _save_draft(request, draft, form)
    action = request.POST.get("action", "save")
    remove = request.POST.get("remove_attachment")

    if remove:
        removed = draft.attachments.filter(pk=_as_int(remove)).first()
        if removed:
            removed.file.delete(save=False)
            removed.delete()
            messages.info(request, f"Removed “{removed.filename}”.")
        return redirect("draft", pk=draft.pk)

    attachments = list(draft.attachments.all())
    shown = _bound_copy(request, draft)
    shown.is_valid()
    for problem in upload_problems:
        shown.add_error("attachments", problem)
    if action not in ("send", "schedule") or upload_problems or form.errors:
        if upload_problems or form.errors:
            for field, errors in form.errors.items():
                target = field if field in shown.fields else None
                already = shown.errors.get(target or "__all__", [])
                for error in errors:
                    if error not in already:  # the bound copy found it too: say it once
                        shown.add_error(target, error)
            return _render_compose(request, shown, draft, attachments, status=400)
        messages.success(request, "Draft saved.")
        return redirect("draft", pk=draft.pk)

    return _send(request, draft, shown, attachments, action)


def _send(request, draft: Draft, form: ComposeForm, attachments, action: str) -> HttpResponse:
    send_at = draft.send_at if action == "schedule" else None
    if action == "schedule" and (send_at is None or send_at <= timezone.now()):
        form.add_error("send_at", "Choose a date and time in the future to schedule the message.")
    if draft.account is None:
        form.add_error("account", "Choose the account to send this message from.")
    else:
        for field, errors in size_problems(draft, attachments).items():
            for error in errors:
                form.add_error(field, error)
    text = " ".join([draft.subject, draft.body_text, draft.body_html])
    reminder = (
        not attachments and MENTIONS_ATTACHMENT.search(text)
        and not request.POST.get("confirm_no_attachment")
    )
    if form.errors:
        return _render_compose(request, form, draft, attachments, status=400)
    if reminder:
        return _render_compose(request, form, draft, attachments, status=400, ask_attachment=True)
    try:
        message = services.send_draft(request.user, draft, send_at=send_at)
    except services.NotFound:
        return redirect("drafts")
    except (ValidationError, services.ActionNotAllowed) as exc:
        _errors_to_form(form, exc)
        return _render_compose(request, form, draft, attachments, status=400)
    # No notice: the message page's status (kept live) says what happens, and a notice
    # such as "Sending." would stay at the top after the results were in.
    return redirect("message", pk=message.pk)


def _errors_to_form(form: ComposeForm, exc: Exception) -> None:
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            target = field if field in form.fields and field != "draft" else None
            for error in errors:
                form.add_error(target, error)
    else:
        for error in getattr(exc, "messages", [str(exc)]):
            form.add_error(None, error)


def _prefill(request: HttpRequest) -> dict:
    # "Quick compose" on the home page and mailto-like links: ?to=...&subject=...
    return {k: request.GET[k] for k in ("to", "subject") if k in request.GET}


def _as_int(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _autosave_reply(draft: Draft) -> JsonResponse:
    return JsonResponse({
        "draft": draft.pk,
        "url": reverse("draft", args=[draft.pk]),
        "saved_at": date_format(timezone.localtime(draft.updated_at), "H:i:s"),
    })


@login_required
@require_POST
def autosave(request: HttpRequest) -> HttpResponse:
    pk = _as_int(request.POST.get("draft", ""))
    draft = _get_draft_for_user(request, pk) if pk else Draft(owner=request.user)
    form = ComposeForm(request.POST, instance=draft, owner=request.user)
    with transaction.atomic():
        _save_draft(request, draft, form)
    return _autosave_reply(draft)


@login_required
@require_POST
def upload_attachment(request: HttpRequest, pk: int) -> HttpResponse:
    draft = _get_draft_for_user(request, pk)
    form = AttachmentUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        error = " ".join(form.errors.get("file", ["Choose a file to attach."]))
        return JsonResponse({"error": error}, status=400)
    add_attachment(draft, form.cleaned_data["file"])
    html = render_to_string("webui/compose/attachment_list.html", {
        "attachments": draft.attachments.all(), "draft": draft,
    }, request=request)
    return JsonResponse({"html": html})


@login_required
def draft_list(request: HttpRequest) -> HttpResponse:
    drafts = (
        Draft.objects.filter(owner=request.user).select_related("account")
        .order_by("-updated_at")
    )
    return render(request, "webui/compose/drafts.html", {"drafts": drafts})


@login_required
@require_POST
def draft_delete(request: HttpRequest, pk: int) -> HttpResponse:
    draft = _get_draft_for_user(request, pk)
    with transaction.atomic():
        for attachment in draft.attachments.all():
            attachment.file.delete(save=False)
        draft.delete()
    messages.success(request, "Draft deleted.")
    return redirect("drafts")
