"""``manage.py outbox``: list the outbox with per-recipient results and the reason a message
waits (paused account, quota, retry, outcome unknown); ``outbox retry|resend|cancel ID``
act on one message through ``mailer.services``, as its owner."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand
from django.db.models import Prefetch
from django.utils import timezone

from mailer import services
from mailer.models import OutboxMessage, Recipient

from ._common import get_message, get_user, service_errors

Status = OutboxMessage.Status


class Command(BaseCommand):
    help = (
        "List the outbox with every recipient's result (outbox [--status S] [--json]), or "
        "act on one message: outbox retry ID [--failed-only] | resend ID | cancel ID."
    )

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=Status.values, help="only messages in this state")
        parser.add_argument("--user", help="only this user's messages")
        parser.add_argument(
            "--limit", type=int, default=50, help="at most this many, newest first (default 50)"
        )
        parser.add_argument("--json", action="store_true", help="print JSON")
        sub = parser.add_subparsers(dest="action", metavar="ACTION")
        retry = sub.add_parser("retry", help="send again now, to every recipient not yet accepted")
        retry.add_argument("id", type=int)
        retry.add_argument(
            "--failed-only", action="store_true", help="only to the recipients that failed"
        )
        sub.add_parser("resend", help="resend a message whose outcome is unknown").add_argument(
            "id", type=int
        )
        sub.add_parser("cancel", help="cancel a message that has not been sent").add_argument(
            "id", type=int
        )

    def handle(self, *args, **opts):
        action = opts.get("action")
        if action is None:
            return self._list(opts)
        message = get_message(opts["id"])
        with service_errors():
            if action == "retry":
                message = services.retry_now(
                    message.owner, message, failed_only=opts["failed_only"]
                )
            elif action == "resend":
                message = services.resend_unknown(message.owner, message)
            else:
                message = services.cancel(message.owner, message)
        done = {
            "retry": "Queued for another try",
            "resend": "Queued to be sent again",
            "cancel": "Cancelled",
        }
        self.stdout.write(f"{done[action]}: #{message.pk} is now {message.status}.")

    def _list(self, opts) -> None:
        messages = OutboxMessage.objects.select_related("account", "owner").prefetch_related(
            Prefetch("recipients", queryset=Recipient.objects.order_by("id"))
        )
        if opts["status"]:
            messages = messages.filter(status=opts["status"])
        if opts["user"]:
            messages = messages.filter(owner=get_user(opts["user"]))
        rows = [message_dict(m) for m in messages.order_by("-created_at", "-id")[: opts["limit"]]]
        if opts["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
        elif not rows:
            self.stdout.write(
                "The outbox is empty" + (f" (status {opts['status']})." if opts["status"] else ".")
            )
        else:
            for row in rows:
                self.stdout.write(_format(row))


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _waiting(m: OutboxMessage) -> str | None:
    """Why a message that is not final waits, as one word (the full reason is beside it)."""
    now = timezone.now()
    if m.status == Status.DEFERRED:
        if m.account is not None and m.account.paused_at is not None:
            return "paused"
        if "quota" in m.wait_reason.lower():
            return "quota"
        return "retry"
    if m.status == Status.SCHEDULED:
        if (
            m.hold_until
            and m.next_attempt_at
            and m.next_attempt_at <= m.hold_until
            and m.hold_until > now
        ):
            return "hold"
        return "schedule"
    if m.status == Status.QUEUED and m.account is not None and m.account.paused_at is not None:
        return "paused"
    return None


def _reason(m: OutboxMessage, waiting: str | None) -> str:
    if m.status == Status.UNKNOWN:
        return (
            "Outcome unknown: the connection was lost after the message was handed over but "
            "before the server confirmed it, so the server may have it. It is not resent "
            f"automatically; if it did not arrive, resend it with `manage.py outbox resend {m.pk}`."
            + (f" ({m.last_error})" if m.last_error else "")
        )
    if waiting == "paused":
        reason = m.account.paused_reason or m.wait_reason or "The account is paused."
        return (
            f"The account “{m.account.label}” is paused: {reason} Fix the account, then "
            f'`manage.py smtpaccount resume "{m.account.label}"`.'
        )
    if m.wait_reason:
        return m.wait_reason
    if waiting == "hold":
        return f"Held until {m.hold_until:%Y-%m-%d %H:%M:%S %Z} (undo window)."
    if waiting == "schedule":
        return f"Scheduled for {m.next_attempt_at:%Y-%m-%d %H:%M %Z}."
    if m.status in (Status.FAILED, Status.DEFERRED):
        return m.last_error
    return ""


def message_dict(m: OutboxMessage) -> dict:
    waiting = _waiting(m)
    return {
        "id": m.pk,
        "status": m.status,
        "waiting": waiting,
        "reason": _reason(m, waiting),
        "owner": m.owner.get_username(),
        "account": m.account.label if m.account else None,
        "subject": m.subject,
        "message_id": m.message_id,
        "envelope_from": m.envelope_from,
        "to": m.to_display,
        "size": m.size,
        "attempts": m.attempts,
        "created_at": _iso(m.created_at),
        "scheduled_at": _iso(m.scheduled_at),
        "next_attempt_at": _iso(m.next_attempt_at) if not m.is_final else None,
        "last_attempt_at": _iso(m.last_attempt_at),
        "sent_at": _iso(m.sent_at),
        "last_error": m.last_error,
        "recipients": [
            {
                "address": r.address,
                "kind": r.kind,
                "status": r.status,
                "code": r.code,
                "enhanced": r.enhanced or None,
                "text": r.text,
                "reason": services.explain(r.code, r.enhanced or None, r.text)
                if r.status in (Recipient.Status.FAILED, Recipient.Status.DEFERRED)
                else "",
                # Past the first hop (a delivery report), or null.
                "remote": _remote(r),
            }
            for r in m.recipients.all()
        ],
        "reports": [
            {"id": rep.pk, "kind": rep.kind, "folder": rep.folder, "size": rep.size,
             "reporting_mta": rep.reporting_mta, "found_at": _iso(rep.found_at),
             "file": rep.raw.path}
            for rep in m.delivery_reports.all()
        ],
    }


def _remote(r: Recipient) -> dict | None:
    if not r.remote:
        return None
    return {"state": r.remote, "mta": r.remote_mta, "status": r.remote_status,
            "code": r.remote_code, "text": r.remote_text, "reason": r.remote_reason,
            "at": _iso(r.remote_at), "report": r.report_id}


def _format(row: dict) -> str:
    created = row["created_at"][:19].replace("T", " ")
    lines = [
        f"#{row['id']}  {row['status'].upper():<9} {created}  {row['account'] or '(no account)'}"
        f" [{row['owner']}]  “{row['subject'] or '(no subject)'}”  {row['attempts']} attempt(s)"
    ]
    if row["next_attempt_at"] and row["status"] != Status.SENDING:
        lines.append(f"    next attempt: {row['next_attempt_at'][:19].replace('T', ' ')} UTC")
    if row["reason"]:
        lines.append(f"    why: {row['reason']}")
    width = max((len(r["address"]) for r in row["recipients"]), default=0)
    for r in row["recipients"]:
        reply = " ".join(str(x) for x in (r["code"], r["enhanced"], r["text"]) if x)
        # The plain-words reason quotes the server's reply itself.
        shown = "" if r["reason"] else reply
        line = f"    {r['kind']:<3} {r['address']:<{width}}  {r['status']:<8}  {shown}"
        if r["reason"]:
            line += f"\n        {r['reason']}"
        if r["remote"]:
            far = r["remote"]
            said = " ".join(str(x) for x in (far["code"], far["status"], far["text"]) if x)
            line += (f"\n        later: {far['state']}"
                     + (f" at {far['mta']}" if far["mta"] else "") + (f": {said}" if said else "")
                     + f"\n        {far['reason']} (report #{far['report']})")
        lines.append(line.rstrip())
    for rep in row["reports"]:
        lines.append(f"    report #{rep['id']} ({rep['kind']}, {rep['size']} bytes): {rep['file']}")
    return "\n".join(lines)
