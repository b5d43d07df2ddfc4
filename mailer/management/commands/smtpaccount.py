"""``manage.py smtpaccount add|list|check|resume|connect``: manage sending accounts from a
shell. ``connect`` is "Sign in with …" for a shell: it prints the provider's address to
open, and completes with the address the browser ends on (or the bare code).

Passwords and OAuth2 tokens are read only from an environment variable (--password-env) or
a file (--password-file), never from the command line. ``check`` and ``resume`` go through
``mailer.services``, like the web UI's buttons.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError
from email_validator import EmailNotValidError

from mailer import mime, presets, services
from mailer.models import OutboxMessage, SmtpAccount

from ._common import describe_validation_error, get_account, get_user, read_secret, service_errors

DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
AUTH_CHOICES = {m.value.lower(): m.value for m in SmtpAccount.AuthMechanism}


class Command(BaseCommand):
    help = "Add, list, check, resume and connect (sign in with a provider) SMTP accounts."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        _add_arguments_for_add(sub.add_parser("add", help="add an account"))

        lst = sub.add_parser("list", help="list accounts")
        lst.add_argument("--user", help="only this user's accounts")
        lst.add_argument("--json", action="store_true", help="print JSON")

        for name, text in (
            (
                "check",
                "connect, start TLS and log in; print the capabilities and the redacted transcript",
            ),
            ("resume", "lift an account's pause and release its waiting mail"),
        ):
            p = sub.add_parser(name, help=text)
            p.add_argument("label")
            p.add_argument("--user", help="the owner, when several users have this label")
        _add_arguments_for_connect(sub.add_parser(
            "connect", help="sign in with an OAuth2 provider: a new account, or reconnect one"))

    def handle(self, *args, **opts):
        return getattr(self, f"_{opts['action']}")(opts)

    # --- add ---------------------------------------------------------------------------

    def _add(self, opts) -> None:
        user = get_user(opts["user"])
        fields = _account_fields(opts, user)
        secret = _checked_login(opts, fields)
        account = SmtpAccount(**fields)
        account.set_secret(secret)
        try:
            account.full_clean(validate_constraints=False)
            services.add_account(user, account, make_default=opts["default"])
        except ValidationError as exc:
            raise CommandError(describe_validation_error(exc)) from exc
        except IntegrityError as exc:
            raise CommandError(
                f"{user.get_username()} already has an account labelled {opts['label']!r}: "
                f"choose another --label."
            ) from exc
        self.stdout.write(
            f"Added “{account.label}” for {user.get_username()}: {account.host}:{account.port} "
            f"({account.security}){', the default account' if account.is_default else ''}. "
            f"Test it with: python manage.py smtpaccount check "
            f"{_quoted(account.label)} --user {user.get_username()}"
        )

    # --- list --------------------------------------------------------------------------

    def _list(self, opts) -> None:
        accounts = SmtpAccount.objects.select_related("owner").order_by("owner__username", "label")
        if opts["user"]:
            accounts = accounts.filter(owner=get_user(opts["user"]))
        rows = [_account_dict(a) for a in accounts]
        if opts["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No accounts yet. Add one with `python manage.py smtpaccount add`.")
            return
        for row in rows:
            state = f"PAUSED: {row['paused_reason']}" if row["paused"] else "active"
            login = (
                f"{row['username']} ({row['auth_mechanism']})" if row["username"] else "no login"
            )
            limits = (
                ", ".join(f"{n}/{unit}" for unit, n in row["quotas"].items() if n is not None)
                or "no quota"
            )
            self.stdout.write(
                f"{row['label']} [{row['owner']}]{' (default)' if row['is_default'] else ''}\n"
                f"    {row['host']}:{row['port']} {row['security']}"
                f"{'' if row['verify_tls'] else ' (certificate NOT verified)'}, {login}, "
                f"from {row['from_address']}, {limits}, {state}"
            )

    # --- connect -------------------------------------------------------------------------

    def _connect(self, opts) -> None:
        """The web's sign-in (``mailer.oauth.signins``), this process playing the browser's
        session and, where no worker is quicker, the worker."""
        from mailer.oauth import signins

        user = get_user(opts["user"])
        account = SmtpAccount.objects.filter(owner=user, label=opts["label"]).first()
        session: dict = {}
        with service_errors():
            row = signins.start(user, opts["provider"], redirect_uri=opts["redirect_uri"],
                                account=account, label=opts["label"], session=session)
            row = _step(user, row.pk, signins.Status.PREPARING)
            if row.status != signins.Status.AT_PROVIDER:
                raise CommandError(row.message)
            self.stdout.write(
                ("Reconnecting" if account else "Connecting") + f" “{opts['label']}”. Open this "
                f"address in a browser, sign in and allow Mailroom:\n\n    {row.authorize_url}\n\n"
                "Then paste the address the browser ends on (Mailroom's page, which will say the "
                "sign-in was not started in that browser), or just its code:"
            )
            pasted = opts["response"] or input("> ")
            row = signins.callback(user, session, _response(pasted, row.state))
            row = _step(user, row.pk, signins.Status.EXCHANGING)
        if row.status != signins.Status.DONE:
            raise CommandError(row.message)
        self.stdout.write(row.message)

    # --- check / resume ----------------------------------------------------------------

    def _check(self, opts) -> None:
        account = get_account(opts["label"], opts["user"])
        self.stdout.write(
            f"Checking “{account.label}” ({account.host}:{account.port}, {account.security}) ..."
        )
        with service_errors():
            result = services.check_account(account.owner, account)
        if result.transcript:
            self.stdout.write("Transcript (secrets redacted):")
            for line in result.transcript:
                self.stdout.write(f"    {line}")
        if result.capabilities:
            self.stdout.write("Capabilities:")
            self.stdout.write(_indent(json.dumps(result.capabilities, indent=2, sort_keys=True)))
        if not result.ok:
            raise CommandError(result.verdict)
        self.stdout.write(result.verdict)

    def _resume(self, opts) -> None:
        account = get_account(opts["label"], opts["user"])
        was_paused = account.paused_at is not None
        with service_errors():
            services.resume_account(account.owner, account)
        waiting = OutboxMessage.objects.filter(
            account=account, status=OutboxMessage.Status.DEFERRED
        ).count()
        self.stdout.write(
            (f"Resumed “{account.label}”." if was_paused else f"“{account.label}” was not paused.")
            + f" {waiting} waiting message(s) will be tried now."
        )


def _step(user, pk: int, status: str):
    """Run the sign-in's step ``status`` here unless a worker already took it, and wait for
    it to end (at most the check deadline)."""
    import time

    from mailer.oauth import signins

    signins.run(pk)
    give_up = time.monotonic() + services.check_deadline() + services.CHECK_GRACE_SECONDS + 1
    row = signins.current(user, pk)
    while row.status == status and time.monotonic() < give_up:
        time.sleep(0.2)
        row = signins.current(user, pk)
    return row


def _response(pasted: str, state: str) -> dict[str, str]:
    """The query of the pasted address, or a bare code for this sign-in."""
    from urllib.parse import parse_qsl, urlsplit

    pasted = pasted.strip()
    if "?" not in pasted:
        return {"code": pasted, "state": state}
    query = dict(parse_qsl(urlsplit(pasted).query))
    if "state" not in query and "?" in query.get("next", ""):  # the login page came first
        return _response(query["next"], state)
    return query


def _add_arguments_for_connect(p) -> None:
    p.add_argument("label", help="the account's name: an existing one is reconnected")
    p.add_argument("--user", required=True, help="the owner's username")
    p.add_argument("--provider", required=True,
                   help="google, microsoft, or a name in MAILROOM_OAUTH_PROVIDERS")
    p.add_argument(
        "--redirect-uri", default="http://localhost:8000/accounts/oauth/callback/",
        help="the address registered at the provider for Mailroom's sign-in, "
        "https://<your Mailroom>/accounts/oauth/callback/ (default: the local `up` address)")
    p.add_argument("--response", default="",
                   help="the address the browser ended on (or the code), instead of asking")


def _read_pem(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not a PEM text file"
        raise CommandError(f"Cannot read the CA certificate {path}: {reason}.") from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise CommandError(
            f"{path} holds no PEM certificate (a block starting with "
            f"-----BEGIN CERTIFICATE-----). Give the CA certificate in PEM form."
        )
    return text


def _account_dict(a: SmtpAccount) -> dict:
    return {
        "label": a.label,
        "owner": a.owner.get_username(),
        "host": a.host,
        "port": a.port,
        "security": a.security,
        "auth_mechanism": a.auth_mechanism,
        "username": a.username,
        "has_secret": a.has_secret,
        "from_name": a.from_name,
        "from_address": a.from_address,
        "verify_tls": a.verify_tls,
        "is_default": a.is_default,
        "quotas": {"minute": a.quota_per_minute, "hour": a.quota_per_hour, "day": a.quota_per_day},
        "paused": a.paused_at is not None,
        "paused_reason": a.paused_reason,
        "capabilities_seen_at": a.capabilities_seen_at.isoformat()
        if a.capabilities_seen_at
        else None,
    }


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _quoted(label: str) -> str:
    return f'"{label}"' if " " in label else label


def _account_fields(opts, user) -> dict[str, object]:
    """The SmtpAccount fields the options give: the preset's, then each option's."""
    fields: dict[str, object] = {}
    if opts["preset"]:
        fields.update(presets.PRESETS[opts["preset"]].account_fields())
    security = opts["security"] or fields.get("security") or "starttls"
    if opts["port"]:
        port = opts["port"]
    elif opts["preset"] and not opts["security"]:
        port = fields["port"]
    else:
        port = DEFAULT_PORTS[security]
    fields.update(
        owner=user,
        label=opts["label"],
        host=opts["host"] or fields.get("host"),
        port=port,
        security=security,
        username=opts["username"],
        from_address=opts["from_address"],
        from_name=opts["from_name"],
        reply_to=opts["reply_to"],
    )
    if not fields["host"]:
        raise CommandError("Say which server to send through with --host (or use --preset).")
    if opts["auth"]:
        fields["auth_mechanism"] = AUTH_CHOICES[opts["auth"]]
    if opts["allow_plaintext_auth"]:
        fields["allow_plaintext_auth"] = True
    if opts["insecure"]:
        fields["verify_tls"] = False
    if opts["cafile"]:
        fields["ca_certificate"] = _read_pem(opts["cafile"])
    for opt, field in (
        ("rate", "quota_per_minute"),
        ("per_hour", "quota_per_hour"),
        ("per_day", "quota_per_day"),
    ):
        if opts[opt] is not None:
            if opts[opt] < 1:
                raise CommandError(
                    f"--{opt.replace('_', '-')} must be at least 1 (leave it out for no limit)."
                )
            fields[field] = opts[opt]
    return fields


def _checked_login(opts, fields: dict[str, object]) -> str:
    """Refuse a From address, a plaintext login or a login without password or user that
    could never work; the secret read from --password-env or --password-file."""
    security = fields["security"]
    try:
        mime.validate_address(opts["from_address"])
    except EmailNotValidError as exc:
        raise CommandError(
            f"--from-address {opts['from_address']!r} is not a valid address: {exc}"
        ) from None
    if security == "none" and opts["username"] and not opts["allow_plaintext_auth"]:
        raise CommandError(
            "With --security none the password would cross the network in clear. Use "
            "starttls or tls, or add --allow-plaintext-auth for a server on a trusted network."
        )

    secret = read_secret(opts["password_env"], opts["password_file"])
    logs_in = fields.get("auth_mechanism", "auto") != "none"
    if secret and not opts["username"]:
        raise CommandError("A password was given but no --username to log in with.")
    if opts["username"] and logs_in and not secret:
        raise CommandError(
            "The account logs in as "
            f"{opts['username']!r} but has no password: give it with --password-env VAR "
            "or --password-file FILE (or --auth none for a server that needs no login)."
        )
    return secret or ""


def _add_arguments_for_add(add) -> None:
    add.add_argument("--user", required=True, help="the owner's username")
    add.add_argument("--label", required=True, help="a name for the account, unique per user")
    _add_server_arguments(add)
    _add_sending_arguments(add)


def _add_server_arguments(add) -> None:
    """Where and how to connect and log in."""
    add.add_argument(
        "--preset",
        choices=sorted(presets.PRESETS),
        help="fill host, port, security, login method and quotas for a known provider",
    )
    add.add_argument("--host", help="SMTP server host name")
    add.add_argument(
        "--port", type=int, help="port (default: 465 for tls, 587 for starttls, 25 for none)"
    )
    add.add_argument(
        "--security", choices=list(DEFAULT_PORTS), help="none, starttls (default) or tls"
    )
    add.add_argument("--username", default="", help="login name")
    add.add_argument(
        "--password-env",
        metavar="VAR",
        help="read the password (or OAuth2 token) from this environment variable",
    )
    add.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password (or OAuth2 token) from this file",
    )
    add.add_argument(
        "--auth",
        choices=list(AUTH_CHOICES),
        help="login method (default auto; none = no login)",
    )
    add.add_argument(
        "--allow-plaintext-auth",
        action="store_true",
        help="allow the login over an unencrypted connection",
    )
    add.add_argument(
        "--cafile", metavar="PEM", help="trust this CA certificate (PEM file) for the server"
    )
    add.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (only on a network you trust)",
    )


def _add_sending_arguments(add) -> None:
    """The sender's identity, the quotas and the default choice."""
    add.add_argument("--from-address", required=True, help="the From address")
    add.add_argument("--from-name", default="", help="the From display name")
    add.add_argument("--reply-to", default="", help="a default Reply-To address")
    add.add_argument("--rate", type=int, metavar="N", help="send at most N messages a minute")
    add.add_argument("--per-hour", type=int, metavar="N", help="send at most N messages an hour")
    add.add_argument("--per-day", type=int, metavar="N", help="send at most N messages a day")
    add.add_argument("--default", action="store_true", help="make it the user's default account")
