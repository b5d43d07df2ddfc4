"""Helpers shared by the mail commands (the leading underscore keeps Django from taking
this module for a command): finding users, accounts and messages in plain words, reading
secrets, and turning service errors into ``CommandError``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from mailer import services
from mailer.models import OutboxMessage, SmtpAccount


def get_user(username: str):
    User = get_user_model()
    try:
        return User.objects.get(**{User.USERNAME_FIELD: username})
    except User.DoesNotExist:
        raise CommandError(
            f"There is no user {username!r}. Create one with `python manage.py createsuperuser` "
            f"or check the spelling."
        ) from None


def get_account(label: str, username: str | None = None) -> SmtpAccount:
    """The account with this label (of this user, when given; the label must then be unique
    across users otherwise)."""
    accounts = SmtpAccount.objects.select_related("owner").filter(label=label)
    if username is not None:
        accounts = accounts.filter(owner=get_user(username))
    found = list(accounts[:2])
    if not found:
        known = SmtpAccount.objects.order_by("label")
        if username is not None:
            known = known.filter(owner__username=username)
        labels = ", ".join(repr(a.label) for a in known) or "none yet"
        raise CommandError(
            f"There is no account labelled {label!r}"
            + (f" for {username}" if username else "")
            + f". Known accounts: {labels}. Add one with `python manage.py smtpaccount add`."
        )
    if len(found) > 1:
        raise CommandError(
            f"Several users have an account labelled {label!r}: say whose with --user USERNAME."
        )
    return found[0]


def get_message(message_id: int) -> OutboxMessage:
    try:
        return OutboxMessage.objects.select_related("owner", "account").get(pk=message_id)
    except OutboxMessage.DoesNotExist:
        raise CommandError(
            f"There is no message {message_id} in the outbox. "
            f"List the messages with `python manage.py outbox`."
        ) from None


def read_secret(env_var: str | None, path: str | None) -> str | None:
    """A password or token from an environment variable or a file (never from the command
    line, where it would end up in the shell history and the process list)."""
    if env_var and path:
        raise CommandError(
            "Give the password either with --password-env or with --password-file, not both."
        )
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise CommandError(
                f"The environment variable {env_var} is not set or empty. Export the "
                f"password in it (e.g. `read -s {env_var}; export {env_var}`) and try again."
            )
        return value
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
            raise CommandError(f"Cannot read the password file {path}: {reason}.") from exc
        value = value.removesuffix("\n").removesuffix("\r")
        if not value:
            raise CommandError(f"The password file {path} is empty.")
        return value
    return None


def describe_validation_error(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        lines = [msg for messages in exc.message_dict.values() for msg in messages]
    else:
        lines = list(exc.messages)
    return " ".join(lines)


@contextlib.contextmanager
def service_errors():
    """Turn what ``mailer.services`` raises into plain-words ``CommandError``s."""
    try:
        yield
    except ValidationError as exc:
        raise CommandError(describe_validation_error(exc)) from exc
    except services.ActionNotAllowed as exc:
        raise CommandError(str(exc)) from exc
    except services.NotFound as exc:
        raise CommandError("Not found: it may have been deleted a moment ago.") from exc
