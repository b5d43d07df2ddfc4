"""Provider presets for the account form: a thin adapter over ``mailer.presets``.

The table of providers (with quotas and help) belongs to ``mailer.presets``; if that module
is missing the account form falls back to the host, port and security of a few providers
below. The adapter only turns entries into form choices and field values.
"""

from __future__ import annotations

from typing import Any

# Used only while mailer.presets is missing: host, port and security of common providers.
_FALLBACK: dict[str, dict[str, Any]] = {
    "gmail": {"name": "Gmail", "host": "smtp.gmail.com", "port": 587, "security": "starttls"},
    "microsoft365": {"name": "Microsoft 365", "host": "smtp.office365.com", "port": 587,
                     "security": "starttls"},
    "fastmail": {"name": "Fastmail", "host": "smtp.fastmail.com", "port": 465, "security": "tls"},
    "icloud": {"name": "iCloud Mail", "host": "smtp.mail.me.com", "port": 587,
               "security": "starttls"},
    "yahoo": {"name": "Yahoo Mail", "host": "smtp.mail.yahoo.com", "port": 465, "security": "tls"},
    "local": {"name": "Local sink (this machine)", "host": "127.0.0.1", "port": 2525,
              "security": "none"},
}


def _table() -> dict[str, dict[str, Any]]:
    try:
        from mailer.presets import PRESETS
    except ImportError:
        return _FALLBACK
    return {key: {"name": p.name, "help": p.help, **p.account_fields()} for key, p in PRESETS.items()}


def choices() -> list[tuple[str, str]]:
    return [(key, str(entry["name"])) for key, entry in _table().items()]


def field_values() -> dict[str, dict[str, Any]]:
    """Per preset, the values it puts into the account form's fields (and its help)."""
    return {
        key: {k: v for k, v in entry.items() if k != "name"}
        for key, entry in _table().items()
    }
