"""Provider presets for the account form, from ``mailer.presets``: the form's choices, and
per preset the field values (host, port, security, login method, quotas) and its help."""

from __future__ import annotations

from typing import Any

from mailer.presets import PRESETS, choices

__all__ = ["choices", "field_values"]


def field_values() -> dict[str, dict[str, Any]]:
    return {key: {"help": p.help, **p.account_fields()} for key, p in PRESETS.items()}
