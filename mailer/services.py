"""The only way the UI and the commands change delivery state (CONTRACTS.md §3).

Every function takes the acting user and raises ``NotFound`` for another owner's object,
``ValidationError`` (per-field messages) for bad input and ``ActionNotAllowed`` (plain words)
when the object's state forbids the action. State changes are conditional UPDATEs, so a
worker claiming the same message at the same moment cannot be overruled silently.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from mailer import attachments, mime, precheck
from mailer.models import (
    AccountCheck,
    Attachment,
    Draft,
    ImapSettings,
    OAuthSignIn,
    OAuthToken,
    OutboxMessage,
    Recipient,
    SmtpAccount,
    UserPreferences,
)

Status = OutboxMessage.Status
RStatus = Recipient.Status


class NotFound(Exception):
    """The object does not exist for this user (the UI turns it into a 404)."""


class ActionNotAllowed(Exception):
    """The object's current state forbids the action; ``str()`` says why in plain words."""


@dataclass
class CheckResult:
    ok: bool
    verdict: str
    capabilities: dict | None = None
    transcript: list[str] = field(default_factory=list)
    error: str = ""
    imap: dict | None = None  # check_imap's result, for an account with an IMAP side


def _own(user, obj):
    if obj is None or getattr(obj, "owner_id", None) != user.pk:
        raise NotFound("Not found.")
    return obj


def _enqueue(message_id: int, account_id: int | None = None) -> None:
    """Ring the bell after commit, with the id only; the sweeper covers a lost wake-up.
    With the account, the wake-up coalesces with one already waiting for that account."""
    from mailer import tasks

    tasks.wake(message_id, account_id)


# --- sending -----------------------------------------------------------------------------


def _delete_draft_row(pk: int) -> bool:
    """Delete the draft's row with one DELETE; False when it was already gone.

    Not QuerySet.delete(): its collector would first select the draft and then delete
    its attachments by cascade. Those that go with the message have just been moved to it,
    and one added after build_from_draft read them must not vanish: it still refers to the
    draft, so the deferred foreign key refuses the commit and nothing is sent (send_draft).
    Nothing else refers to a draft and no signal listens for its deletion."""
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {qn(Draft._meta.db_table)} WHERE {qn(Draft._meta.pk.column)} = %s",
            [pk],
        )
        return cursor.rowcount == 1


def _draft_snapshot(draft: Draft) -> dict:
    return {
        "account_id": draft.account_id,
        "to": draft.to,
        "cc": draft.cc,
        "bcc": draft.bcc,
        "reply_to": draft.reply_to,
        "subject": draft.subject,
        "body_text": draft.body_text,
        "body_html": draft.body_html,
        "send_at": draft.send_at.isoformat() if draft.send_at else None,
        "delivery_report": draft.delivery_report,
    }


def send_draft(
    user, draft: Draft, *, hold_seconds: int | None = None, send_at: datetime | None = None
) -> OutboxMessage:
    """Freeze ``draft`` into an OutboxMessage in one transaction and wake a worker on commit.

    ``hold_seconds`` is the undo window; ``None`` takes the user's preference
    (UserPreferences.hold_seconds), ``0`` sends at once. ``send_at`` (or the draft's
    ``send_at``) schedules a later time. The draft is consumed: its attachments move to the
    message, and ``undo_send`` / ``edit_as_new_draft`` rebuild a draft from it.
    """
    _own(user, draft)
    account = draft.account
    if account is None or account.owner_id != user.pk:
        raise ValidationError({"account": ["Choose the account to send this message from."]})
    now = timezone.now()
    if hold_seconds is None:
        hold_seconds = UserPreferences.for_user(user).hold_seconds
    if hold_seconds < 0:
        raise ValidationError({"hold_seconds": ["The undo window cannot be negative."]})
    send_at = send_at or draft.send_at
    frozen = mime.build_from_draft(draft, date=now)
    # Refuse now what the account's server would refuse (its capability snapshot).
    precheck.check_message(account, frozen)

    message = _outbox_message(user, draft, frozen, now, hold_seconds, send_at)
    _store(message, draft, frozen)
    draft.pk = None  # consumed, as Model.delete() leaves it
    return message


def _outbox_message(
    user,
    draft: Draft,
    frozen: mime.FrozenMessage,
    now: datetime,
    hold_seconds: int,
    send_at: datetime | None,
) -> OutboxMessage:
    """The unsaved OutboxMessage for a frozen draft: due after the undo window and at
    ``send_at``; waiting at once if its account is paused."""
    account = draft.account
    hold_until = now + timedelta(seconds=hold_seconds) if hold_seconds else None
    due = max(t for t in (now, hold_until, send_at) if t is not None)
    return OutboxMessage(
        owner=user,
        account=account,
        status=Status.SCHEDULED if due > now else Status.QUEUED,
        size=len(frozen.eml),
        envelope_from=frozen.envelope_from,
        message_id=frozen.message_id,
        subject=frozen.subject,
        to_display=frozen.to_display,
        next_attempt_at=due,
        scheduled_at=send_at if send_at and send_at > now else None,
        hold_until=hold_until,
        source_draft=_draft_snapshot(draft),
        delivery_report=draft.delivery_report,
        # Mail of a paused account waits (it is not claimed) until the account is fixed.
        wait_reason=f"The account is paused. {account.paused_reason}".strip()[:500]
        if account.paused_at is not None
        else "",
    )


def _store(message: OutboxMessage, draft: Draft, frozen: mime.FrozenMessage) -> None:
    """Save the message, its recipients and attachments and consume the draft, in one
    transaction; wake a worker on commit if it is due now."""
    message.eml.save("message.eml", ContentFile(frozen.eml), save=False)
    try:
        with transaction.atomic():
            message.save()
            Recipient.objects.bulk_create(
                Recipient(message=message, address=addr, kind=kind)
                for addr, kind in frozen.recipients
            )
            if frozen.attachment_count:
                draft.attachments.update(draft=None, message=message)
            if not _delete_draft_row(draft.pk):
                # Sent or deleted meanwhile (a second click on Send): queue it only once.
                raise ActionNotAllowed(
                    "This draft has already been sent or deleted, so it was not sent again. "
                    "Look for it in the outbox."
                )
            if message.status == Status.QUEUED:
                _enqueue(message.pk, message.account_id)
    except (IntegrityError, ActionNotAllowed) as exc:
        # Rolled back for certain: the stored file belongs to no message.
        message.eml.delete(save=False)
        if isinstance(exc, IntegrityError) and Attachment.objects.filter(draft=draft).exists():
            raise ValidationError(
                {
                    "attachments": [
                        "An attachment was added to this draft while it was being sent, so nothing "
                        "was sent. Check the draft and send it again."
                    ]
                }
            ) from exc
        raise


def _draft_from_snapshot(user, message: OutboxMessage) -> Draft:
    snap = message.source_draft or {}
    account = None
    if snap.get("account_id"):
        account = SmtpAccount.objects.filter(owner=user, pk=snap["account_id"]).first()
    send_at = snap.get("send_at")
    return Draft.objects.create(
        owner=user,
        account=account or message.account,
        to=snap.get("to", ""),
        cc=snap.get("cc", ""),
        bcc=snap.get("bcc", ""),
        reply_to=snap.get("reply_to", ""),
        subject=snap.get("subject", message.subject),
        body_text=snap.get("body_text", ""),
        body_html=snap.get("body_html", ""),
        send_at=datetime.fromisoformat(send_at) if send_at else None,
        delivery_report=bool(snap.get("delivery_report", False)),
    )


def undo_send(user, message: OutboxMessage) -> Draft:
    """Take back a message still inside its hold (or before its scheduled time): the
    message disappears and an untouched draft, attachments included, comes back."""
    _own(user, message)
    now = timezone.now()
    with transaction.atomic():
        # Conditional: once the hold has passed a worker may claim it; then it is too late.
        taken = OutboxMessage.objects.filter(
            pk=message.pk, status=Status.SCHEDULED, next_attempt_at__gt=now
        ).update(status=Status.CANCELLED, wait_reason="Taken back (undo send).")
        if not taken:
            raise ActionNotAllowed(
                "It is too late to undo: the message has already gone to the outbox for "
                "delivery. You can still cancel it if it is waiting, or edit it as a new draft."
            )
        draft = _draft_from_snapshot(user, message)
        message.attachments.update(message=None, draft=draft)
        eml = message.eml
        OutboxMessage.objects.filter(pk=message.pk).delete()
        transaction.on_commit(lambda: eml.delete(save=False))
    return draft


def cancel(user, message: OutboxMessage) -> OutboxMessage:
    """Cancel a message that has not been sent yet (queued, scheduled or deferred)."""
    _own(user, message)
    done = OutboxMessage.objects.filter(
        pk=message.pk, status__in=OutboxMessage.PENDING_STATUSES
    ).update(status=Status.CANCELLED, next_attempt_at=None, wait_reason="")
    message.refresh_from_db()
    if not done:
        raise ActionNotAllowed(
            f"This message cannot be cancelled because it is {message.get_status_display().lower()}"
            + (
                ": a worker is handing it to the server right now."
                if message.status == Status.SENDING
                else "."
            )
        )
    return message


def _requeue(
    message: OutboxMessage, from_statuses, recipient_statuses, reason: str
) -> OutboxMessage:
    now = timezone.now()
    with transaction.atomic():
        done = OutboxMessage.objects.filter(pk=message.pk, status__in=from_statuses).update(
            status=Status.QUEUED,
            next_attempt_at=now,
            first_attempt_at=None,
            wait_reason="",
            hold_until=None,
        )
        if not done:
            message.refresh_from_db()
            hint = ""
            if message.status == Status.UNKNOWN:
                hint = " Use “Resend” for a message whose outcome is unknown."
            raise ActionNotAllowed(
                reason.format(status=message.get_status_display().lower()) + hint
            )
        message.recipients.filter(status__in=recipient_statuses).update(
            status=RStatus.PENDING, updated_at=now
        )
        _enqueue(message.pk)
    message.refresh_from_db()
    return message


def retry_now(user, message: OutboxMessage, *, failed_only: bool = False) -> OutboxMessage:
    """Send again now, with the same bytes and Message-ID. ``failed_only`` retries only the
    recipients that failed; otherwise every recipient not yet accepted (failed or deferred).
    Recipients that accepted the message never get it twice."""
    _own(user, message)
    if message.account is not None and message.account.paused_at is not None:
        raise ActionNotAllowed(
            f"The account “{message.account.label}” is paused, so nothing can be sent through "
            "it now. Fix its settings (saving them, or a connection test that succeeds, "
            "resumes it) and its waiting mail goes out."
        )
    statuses = (
        [RStatus.FAILED] if failed_only else [RStatus.FAILED, RStatus.DEFERRED, RStatus.PENDING]
    )
    if not message.recipients.filter(status__in=statuses).exists():
        raise ActionNotAllowed(
            "There is nobody left to retry: every recipient has already accepted this message"
            + (" or is still waiting for a retry." if failed_only else ".")
        )
    return _requeue(
        message,
        [Status.QUEUED, Status.SCHEDULED, Status.DEFERRED, Status.FAILED, Status.SENT],
        statuses,
        "A message that is {status} cannot be retried.",
    )


def resend_unknown(user, message: OutboxMessage) -> OutboxMessage:
    """Resend a message whose outcome is unknown (the server may already have it; the user
    accepts a possible duplicate). Same bytes, same Message-ID."""
    _own(user, message)
    return _requeue(
        message,
        [Status.UNKNOWN],
        [RStatus.PENDING, RStatus.DEFERRED],
        "Only a message whose outcome is unknown can be resent; this one is {status}.",
    )


def edit_as_new_draft(user, message: OutboxMessage) -> Draft:
    """A new draft with the message's fields and copies of its attachments."""
    _own(user, message)
    with transaction.atomic():
        draft = _draft_from_snapshot(user, message)
        draft.send_at = None
        draft.save(update_fields=["send_at"])
        for att in message.attachments.all():
            with att.file.open("rb") as fh:
                attachments.add(draft, name=att.filename, content=fh, content_type=att.content_type)
    return draft


# --- accounts ----------------------------------------------------------------------------

WAITING_STATUSES = [Status.QUEUED, Status.SCHEDULED, Status.SENDING, Status.DEFERRED]
TEST_SUBJECT = "Mailroom test message"


def add_account(user, account: SmtpAccount, *, make_default: bool = False) -> SmtpAccount:
    """Save a new account of ``user`` and choose the default: the new account becomes it
    when asked (``make_default``), when the user has no default yet, or when the default is
    the Local sink and the new account is a real one, so that a new user's first real mail
    never goes to the sink by surprise. Raises ``IntegrityError`` for a label in use."""
    account.owner = user
    with transaction.atomic():
        current = (
            SmtpAccount.objects.select_for_update().filter(owner=user, is_default=True).first()
        )
        account.is_default = (
            make_default or current is None or (current.is_local_sink and not account.is_local_sink)
        )
        if account.is_default and current is not None:
            SmtpAccount.objects.filter(owner=user, is_default=True).update(is_default=False)
        account.save()
    return account


def save_sign_in(user, provider, identity, *, account: SmtpAccount | None = None,
                 label: str = "") -> SmtpAccount:
    """Keep what a finished "Sign in with …" gave (``mailer.oauth.flow.Identity``): a new
    account sending through the provider's SMTP server with XOAUTH2 as the address that
    signed in, or — ``account`` given, "Reconnect" — that account's new tokens, which also
    lifts its pause and releases its waiting mail. The tokens are stored encrypted; a
    reconnect must be made as the same address (else nothing changes)."""
    from mailer.oauth import tokens

    if account is None:
        # Signing in again as an address already connected renews that account rather
        # than adding a second one for it.
        account = SmtpAccount.objects.filter(
            owner=user, oauth__provider=provider.key, oauth__email__iexact=identity.email
        ).first()
    if account is not None:
        _own(user, account)
        old = OAuthToken.objects.filter(account=account).first()
        signed_in_as = old.email if old else account.username
        if identity.email.lower() != signed_in_as.lower():
            raise ValidationError(
                f"You signed in to {provider.label} as {identity.email}, but this account "
                f"sends as {signed_in_as}. Sign in as {signed_in_as}, or add a new account "
                f"for {identity.email}."
            )
    with transaction.atomic():
        if account is None:
            account = SmtpAccount(
                label=_free_label(user, label or f"{identity.email} ({provider.label})"),
                from_address=identity.email,
                username=identity.email,
                host=provider.smtp_host,
                port=provider.smtp_port,
                security=provider.smtp_security,
                auth_mechanism=SmtpAccount.AuthMechanism.XOAUTH2,
                # Only an operator who configured a provider's SMTP server without TLS (a
                # closed network) gets a plaintext login: it is their setting.
                allow_plaintext_auth=provider.smtp_security == SmtpAccount.Security.NONE,
            )
            add_account(user, account)
        row = (OAuthToken.objects.select_for_update().filter(account=account).first()
               or OAuthToken(account=account))
        row.provider, row.subject, row.email = provider.key, identity.subject, identity.email
        row.revoked_at = row.refreshing_until = None
        tokens.store(row, identity.token)
        row.save()
    if account.paused_at is not None:
        account = resume_account(user, account)
    return account


def _free_label(user, wanted: str) -> str:
    """``wanted``, or ``wanted (2)``… when the user already has an account of that name."""
    taken = set(SmtpAccount.objects.filter(owner=user, label__startswith=wanted[:90])
                .values_list("label", flat=True))
    label, n = wanted[:100], 2
    while label in taken:
        label, n = f"{wanted[:90]} ({n})", n + 1
    return label


def set_default(user, account: SmtpAccount) -> SmtpAccount:
    """Make ``account`` the user's default (the one compose picks first)."""
    _own(user, account)
    with transaction.atomic():
        SmtpAccount.objects.filter(owner=user, is_default=True).exclude(pk=account.pk).update(
            is_default=False
        )
        SmtpAccount.objects.filter(pk=account.pk).update(is_default=True)
    account.is_default = True
    return account


def delete_account(user, account: SmtpAccount) -> SmtpAccount | None:
    """Delete an account with no mail waiting; its sent history stays. When it was the
    default, the next one becomes the default, a real account before the Local sink.
    Returns the new default (``None`` when the default did not change or none is left)."""
    _own(user, account)
    with transaction.atomic():
        waiting = OutboxMessage.objects.filter(account=account, status__in=WAITING_STATUSES).count()
        if waiting:
            raise ActionNotAllowed(
                f"“{account.label}” still has {waiting} message(s) waiting to be sent. Cancel "
                "them in the outbox, or wait until they are sent, then delete the account."
            )
        was_default = account.is_default
        account.delete()
        if not was_default:
            return None
        successor = (
            SmtpAccount.objects.filter(owner=user).order_by("is_local_sink", "label").first()
        )
        if successor is not None:
            set_default(user, successor)
    return successor


# --- connection checks: run by a worker, under one deadline -------------------------------


def check_deadline() -> float:
    return float(settings.MAILROOM_CHECK_DEADLINE_SECONDS)


# How long after its deadline a running check is given up for lost (its worker died).
CHECK_GRACE_SECONDS = 5.0

NO_WORKER = (
    "No worker started the {what} within {deadline:g} s, so it was not run. Mailroom's "
    "background worker is probably not running or is busy: start it (python3 dev.py up "
    "starts one; in production the `worker` service), then try again."
)
WORKER_LOST = (
    "The worker running the {what} stopped before it finished (it may have been restarted). "
    "Try again."
)


def rate_limit(user) -> None:
    """At most MAILROOM_CHECKS_PER_MINUTE connection tests, test messages and "Sign in
    with …" per user: each one sets a worker talking to a server."""
    limit = int(settings.MAILROOM_CHECKS_PER_MINUTE)
    since = timezone.now() - timedelta(minutes=1)
    started = [
        *AccountCheck.objects.filter(owner=user, created_at__gt=since).values_list(
            "created_at", flat=True
        ),
        *OutboxMessage.objects.filter(
            owner=user, subject=TEST_SUBJECT, created_at__gt=since
        ).values_list("created_at", flat=True),
        *OAuthSignIn.objects.filter(owner=user, created_at__gt=since).values_list(
            "created_at", flat=True
        ),
    ]
    if len(started) >= limit:
        wait = max(1, round((min(started) + timedelta(minutes=1) - timezone.now()).total_seconds()))
        raise ActionNotAllowed(
            f"You started {len(started)} connection tests, test messages and sign-ins in the last "
            f"minute, the most Mailroom allows. Wait {wait} s and try again."
        )


def start_check(user, account: SmtpAccount) -> AccountCheck:
    """Ask a worker to test the account's connection (``run_check``); returns the check
    to show. While a test of the account is still on its way, that one is returned
    instead of starting another. Raises ``ActionNotAllowed`` over the rate limit."""
    from mailer import tasks

    _own(user, account)
    current = latest_check(user, account)
    if current is not None and not current.is_finished:
        return current
    rate_limit(user)
    with transaction.atomic():
        check = AccountCheck.objects.create(owner=user, account=account)
        tasks.wake_check(check.pk)
    return check


def latest_check(user, account: SmtpAccount) -> AccountCheck | None:
    """The account's most recent check; one that no worker took (or whose worker was lost)
    within its deadline is ended with a verdict that says so, never left spinning."""
    _own(user, account)
    check = AccountCheck.objects.filter(account=account).order_by("-created_at", "-pk").first()
    if check is None or check.is_finished:
        return check
    now = timezone.now()
    deadline = timedelta(seconds=check_deadline())
    grace = timedelta(seconds=CHECK_GRACE_SECONDS)
    if check.status == AccountCheck.Status.PENDING and now > check.created_at + deadline:
        _expire(check, AccountCheck.Status.PENDING,
                NO_WORKER.format(deadline=check_deadline(), what="test"))
    elif (
        check.status == AccountCheck.Status.RUNNING
        and check.started_at is not None
        and now > check.started_at + deadline + grace
    ):
        _expire(check, AccountCheck.Status.RUNNING, WORKER_LOST.format(what="test"))
    return check


def _expire(check: AccountCheck, status: str, verdict: str) -> None:
    # Conditional: a worker that starts or finishes meanwhile wins.
    now = timezone.now()
    result = asdict(CheckResult(ok=False, verdict=verdict))
    if AccountCheck.objects.filter(pk=check.pk, status=status).update(
        status=AccountCheck.Status.EXPIRED, ok=False, result=result, finished_at=now
    ):
        check.status, check.ok, check.result, check.finished_at = (
            AccountCheck.Status.EXPIRED,
            False,
            result,
            now,
        )
    else:
        check.refresh_from_db()


def run_check(check_id: int) -> AccountCheck | None:
    """The worker's side of ``start_check``: claim the check, run ``check_account`` under
    the deadline and store the result. A check no longer waiting (run, or given up after
    its deadline because no worker came) is left alone; returns None then."""
    now = timezone.now()
    claimed = AccountCheck.objects.filter(
        pk=check_id,
        status=AccountCheck.Status.PENDING,
        created_at__gt=now - timedelta(seconds=check_deadline()),
    ).update(status=AccountCheck.Status.RUNNING, started_at=now)
    if not claimed:
        return None
    check = AccountCheck.objects.select_related("account", "owner").get(pk=check_id)
    result = check_account(check.owner, check.account)
    done = timezone.now()
    AccountCheck.objects.filter(pk=check.pk, status=AccountCheck.Status.RUNNING).update(
        status=AccountCheck.Status.DONE, ok=result.ok, result=asdict(result), finished_at=done
    )
    check.refresh_from_db()
    return check


def check_account(user, account: SmtpAccount, *, deadline: float | None = None) -> CheckResult:
    """Connect (TLS, AUTH), record the capability snapshot, and say in plain words whether
    the account works; then the same for its IMAP side, if it has one (its capabilities and
    folders, in ``imap``). A successful SMTP check resumes a paused account. Everything
    (connect, greeting, TLS, login, on both sides) happens within ``deadline`` seconds
    (MAILROOM_CHECK_DEADLINE_SECONDS by default): the clients' timeouts are capped to what
    is left of it, and an SMTP server that answers too slowly to finish in time is cut off
    when it passes. Synchronous: the web UI runs it in a worker (``start_check``), the
    command line directly."""
    _own(user, account)
    limit = check_deadline() if deadline is None else deadline
    started = time.monotonic()
    result = _check_smtp(user, account, limit)
    if ImapSettings.objects.filter(account=account).exists():
        result.imap = check_imap(account, max(1.0, limit - (time.monotonic() - started)))
        result.ok = result.ok and result.imap["ok"]
    return result


def _check_smtp(user, account: SmtpAccount, limit: float) -> CheckResult:
    from mailer import delivery
    from mailer.smtp import errors as smtp_errors

    client = delivery.client_for(account, transcript=True)
    client.connect_timeout = min(client.connect_timeout, limit)
    client.command_timeout = min(client.command_timeout, limit)
    watchdog = _Watchdog(client, limit)
    started = time.monotonic()
    try:
        with watchdog:
            caps = client.connect()
        client.quit()
    except smtp_errors.SMTPError as exc:
        client.close()
        if watchdog.fired or isinstance(exc, smtp_errors.SMTPTimeoutError):
            verdict = _timeout_verdict(account, exc.phase, time.monotonic() - started)
        else:
            verdict = _check_verdict(exc)
        return CheckResult(ok=False, verdict=verdict, capabilities=None,
                           transcript=list(client.transcript), error=str(exc))
    snapshot = caps.to_dict()
    delivery.record_capabilities(account, snapshot)
    if account.paused_at is not None:
        resume_account(user, account)
    return CheckResult(
        ok=True,
        verdict=f"Connected to {account.host}:{account.port}"
        + (" and logged in" if account.username and account.auth_mechanism != "none" else "")
        + ". The account is ready to send.",
        capabilities=snapshot,
        transcript=list(client.transcript),
    )


def check_imap(account: SmtpAccount, timeout: float) -> dict:
    """Log in to the account's IMAP side and list what it offers; the capabilities and
    folders are kept on ``ImapSettings`` (the form offers the folders). No secret in the
    result."""
    from mailer.imap import session

    account = SmtpAccount.objects.select_related("imap").get(pk=account.pk)
    imap = account.imap
    try:
        probe = session.probe(account, timeout=timeout)
    except session.ImapError as exc:
        return {"ok": False, "verdict": str(exc), "error": exc.server, "capabilities": [],
                "folders": [], "sent_folder": None}
    ImapSettings.objects.filter(pk=imap.pk).update(
        capabilities=probe.capabilities, folders=probe.folders, checked_at=timezone.now())
    found = probe.sent_folder is not None or not imap.save_to_sent
    verdict = probe.verdict if imap.save_to_sent else (
        f"Logged in to {imap.host}:{imap.port}; Mailroom saves no copy of sent mail here "
        "(turned off for this account).")
    return {"ok": found, "verdict": verdict, "error": "", "capabilities": probe.capabilities,
            "folders": probe.folders, "sent_folder": probe.sent_folder}


#: The settings that say which mailbox the IMAP side reads: changing one starts the
#: reading of delivery reports afresh there (the UIDs of another mailbox mean nothing).
_MAILBOX_FIELDS = ("host", "port", "username")


def save_imap(user, account: SmtpAccount, imap: ImapSettings, *,
              secret: str | None = None) -> ImapSettings:
    """Set up or change an account's IMAP side. ``secret``: a new IMAP password; None
    keeps the one saved, "" goes back to the SMTP side's login."""
    _own(user, account)
    imap.account = account
    if secret is not None:
        imap.set_secret(secret)
    old = ImapSettings.objects.filter(account=account).first()
    if old is not None and any(getattr(old, f) != getattr(imap, f) for f in _MAILBOX_FIELDS):
        imap.cursors, imap.capabilities, imap.folders = {}, None, None
    imap.full_clean(exclude=["account"])
    imap.save()
    return imap


def remove_imap(user, account: SmtpAccount) -> None:
    """Turn the IMAP side off: no more copies in Sent, no more reading of reports. What
    was found stays (the copies' and reports' records, the recipients' states)."""
    _own(user, account)
    ImapSettings.objects.filter(account=account).delete()


def _timeout_verdict(account: SmtpAccount, phase: str, seconds: float) -> str:
    where = f"{account.host}:{account.port}"
    hint = (
        "Check the host, the port and the encryption setting: a server that accepts the "
        "connection but never answers is often the wrong port for the encryption chosen "
        "(465 is for TLS, 587 for STARTTLS)."
    )
    if phase == "connect" and account.security != "tls":
        return (
            f"{where} did not accept the connection within {seconds:.0f} s. Check the host "
            "and port; a firewall may be blocking the connection."
        )
    return (
        f"{where} did not finish the greeting, encryption and login within {seconds:.0f} s "
        f"(it stopped answering during the {phase} step). {hint}"
    )


def _check_verdict(exc) -> str:
    """The policy's plain words for a failed check, without what it says about waiting
    mail ("Mailroom will try again later", "Mailroom paused this account"): a check
    neither retries nor pauses anything."""
    from mailer import policy

    reason = policy.classify_error(exc).reason
    for about_mail in (policy._ASK_AGAIN, policy._RESUME):
        reason = reason.replace(" " + about_mail, "").replace(about_mail, "")
    return reason.strip()


class _Watchdog:
    """Cuts the client's connection once ``seconds`` have passed, and keeps cutting until
    the guarded block ends (a socket opened after the first cut is cut too)."""

    def __init__(self, client, seconds: float) -> None:
        self.client, self.seconds = client, seconds
        self.fired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="check-deadline", daemon=True)

    def _run(self) -> None:
        if self._done.wait(self.seconds):
            return
        self.fired = True
        while not self._done.is_set():
            self.client.abort()
            self._done.wait(0.05)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def send_test_message(user, account: SmtpAccount) -> OutboxMessage:
    """A short message from the account to its own address, through the real outbox.
    Refused while the account is paused: it would only wait with the rest of its mail."""
    _own(user, account)
    if account.paused_at is not None:
        raise ActionNotAllowed(
            "The account is paused, so a test message would only wait with its other mail. "
            "Fix its settings first (saving them, or a connection test that succeeds, resumes "
            "it), then send the test message."
        )
    rate_limit(user)
    draft = Draft.objects.create(
        owner=user,
        account=account,
        to=account.from_address,
        subject=TEST_SUBJECT,
        body_text=(
            f"This is a test message sent by Mailroom through the account "
            f"“{account.label}” ({account.host}:{account.port}).\n"
            "If you can read it, the account works.\n"
        ),
    )
    try:
        return send_draft(user, draft, hold_seconds=0)
    except Exception:
        draft.delete()
        raise


def resume_account(user, account: SmtpAccount) -> SmtpAccount:
    """Lift an account's pause; its waiting mail becomes due at once."""
    _own(user, account)
    now = timezone.now()
    with transaction.atomic():
        SmtpAccount.objects.filter(pk=account.pk).update(paused_at=None, paused_reason="")
        # Queued mail that arrived during the pause was never claimed (its wake-up found the
        # account paused): wake it too, rather than leave it to the lost-wake-up sweep.
        waiting = list(
            OutboxMessage.objects.filter(
                account=account, status__in=[Status.DEFERRED, Status.QUEUED]
            ).values_list("pk", flat=True)
        )
        OutboxMessage.objects.filter(pk__in=waiting, status=Status.DEFERRED).update(
            next_attempt_at=now, wait_reason=""
        )
        for pk in waiting:
            _enqueue(pk, account.pk)
    account.refresh_from_db()
    return account


# --- plain words -------------------------------------------------------------------------


# The phase an error class stands for, when the caller does not know it (a stored attempt
# keeps the error's class name, not its phase).
_PHASE_OF_ERROR = {
    "SMTPGreetingError": "greeting",
    "SMTPAuthenticationError": "auth",
    "SMTPSenderRefused": "mail",
    "SMTPRecipientsRefused": "rcpt",
    "SMTPDataError": "data",
}


def _phase(phase: str | None, enhanced: str | None, error_class: str | None) -> str | None:
    if phase or error_class:
        return phase or _PHASE_OF_ERROR.get(error_class or "")
    # RFC 3463: X.1.1-X.1.6 are about the destination address, X.2.* about the recipient's
    # mailbox; only a reply to RCPT carries them.
    parts = (enhanced or "").split(".")
    if len(parts) == 3 and (parts[1] == "2" or (parts[1] == "1" and parts[2] in "123456")):
        return "rcpt"
    return None


def explain(
    code: int | None,
    enhanced: str | None,
    text: str | None,
    error_class: str | None = None,
    *,
    phase: str | None = None,
    server_words: bool = True,
) -> str:
    """The plain-words reason for a server reply or a client error (``mailer.policy``
    decides), ending with the server's words unless ``server_words`` is False (for a page
    that shows them beside it). Without ``phase`` it is inferred from the error class or
    the enhanced code (550 5.1.1 is a recipient's mailbox that does not exist)."""
    from mailer import policy

    decision = policy.classify(
        _phase(phase, enhanced, error_class), code, enhanced, text or "", error_class
    )
    return decision.reason if server_words else decision.plain


def explain_error(exc) -> str:
    from mailer import policy

    return policy.classify_error(exc).reason
