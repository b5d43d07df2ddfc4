"""Provider presets: the server settings and sensible sending quotas of common providers.

The account form (``webui.presets``) fills host, port, security and the login method from
here, and shows the one-line ``help``. Quotas are deliberately below each provider's
published cap (as of 2026): a provider that sees an account hit its cap tends to lock it,
and Mailroom defers mail beyond a quota rather than failing it, so a low quota costs only
time. Raise them on the account if your plan allows more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PRESETS", "ImapPreset", "Preset", "choices", "get", "imap_for"]


@dataclass(frozen=True)
class ImapPreset:
    """The provider's IMAP side (``ImapSettings``): where the mailbox is, and whether
    Mailroom should save a copy of sent mail (not where the provider saves it itself)."""

    host: str
    port: int = 993
    security: str = "tls"  # ImapSettings.Security: "tls" or "starttls"
    save_to_sent: bool = True


@dataclass(frozen=True)
class Preset:
    key: str
    name: str
    host: str
    port: int
    security: str  # SmtpAccount.Security: "none", "starttls" or "tls"
    auth_mechanism: str  # SmtpAccount.AuthMechanism: "auto", "PLAIN", "LOGIN", "XOAUTH2", "none"
    help: str
    quota_per_minute: int | None = None
    quota_per_hour: int | None = None
    quota_per_day: int | None = None
    verify_tls: bool = True
    allow_plaintext_auth: bool = False
    imap: ImapPreset | None = None

    def account_fields(self) -> dict[str, object]:
        """The SmtpAccount fields this preset sets (everything but key, name, help and
        the IMAP side)."""
        fields = asdict(self)
        for meta in ("key", "name", "help", "imap"):
            del fields[meta]
        return fields


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset(
            "gmail", "Gmail", "smtp.gmail.com", 587, "starttls", "auto",
            "Gmail refuses your normal password: create an app password (Google Account → "
            "Security → App passwords; needs 2-Step Verification) or use XOAUTH2 with an "
            "OAuth2 token. Gmail allows about 500 recipients a day (Workspace: 2,000).",
            quota_per_minute=20, quota_per_hour=100, quota_per_day=450,
            # Gmail files what its SMTP server sends in "Sent Mail" itself: a copy from
            # Mailroom would be a second one.
            imap=ImapPreset("imap.gmail.com", save_to_sent=False),
        ),
        Preset(
            "microsoft365", "Microsoft 365 / Outlook.com", "smtp.office365.com", 587,
            "starttls", "XOAUTH2",
            "Microsoft is ending basic-auth (password) SMTP: use XOAUTH2 with an OAuth2 access "
            "token, and make sure SMTP AUTH is enabled for the mailbox. Exchange Online allows "
            "30 messages a minute and 10,000 recipients a day.",
            quota_per_minute=25, quota_per_hour=1000, quota_per_day=9000,
            imap=ImapPreset("outlook.office365.com"),
        ),
        Preset(
            "fastmail", "Fastmail", "smtp.fastmail.com", 465, "tls", "auto",
            "Fastmail needs an app password (Settings → Privacy & Security → App passwords) "
            "with SMTP access; the username is your full Fastmail address.",
            quota_per_minute=20, quota_per_hour=500, quota_per_day=2000,
            imap=ImapPreset("imap.fastmail.com"),
        ),
        Preset(
            "icloud", "iCloud Mail", "smtp.mail.me.com", 587, "starttls", "auto",
            "iCloud needs an app-specific password (account.apple.com → Sign-In and Security); "
            "the username is your iCloud address. iCloud allows about 1,000 recipients a day.",
            quota_per_minute=20, quota_per_hour=200, quota_per_day=900,
            imap=ImapPreset("imap.mail.me.com"),
        ),
        Preset(
            "yahoo", "Yahoo Mail", "smtp.mail.yahoo.com", 465, "tls", "auto",
            "Yahoo needs an app password (Account Security → Generate app password); your "
            "normal password is refused. Yahoo limits accounts to a few hundred messages a day.",
            quota_per_minute=10, quota_per_hour=100, quota_per_day=450,
            imap=ImapPreset("imap.mail.yahoo.com"),
        ),
        Preset(
            "local", "Local sink (this machine)", "127.0.0.1", 1025, "none", "none",
            "Mailroom's development sink (manage.py devsink): it stores every message under "
            "the data directory and delivers nothing. No login, no quota.",
        ),
    )
}


def get(key: str) -> Preset:
    """The preset called ``key``; ``KeyError`` names the known ones."""
    try:
        return PRESETS[key]
    except KeyError:
        raise KeyError(
            f"No provider preset {key!r}; known presets: {', '.join(PRESETS)}."
        ) from None


def choices() -> list[tuple[str, str]]:
    """``(key, name)`` pairs for a form's select."""
    return [(p.key, p.name) for p in PRESETS.values()]


def imap_for(smtp_host: str) -> ImapPreset | None:
    """The IMAP side of the provider whose SMTP server is ``smtp_host``, if it is one of
    the presets (the IMAP form starts from it)."""
    host = smtp_host.strip().lower().rstrip(".")
    for preset in PRESETS.values():
        if preset.imap is not None and preset.host == host:
            return preset.imap
    return None
