"""Field validators for account settings: a bad value is refused when it is saved, next to
the field, instead of making every later send fail."""

from __future__ import annotations

import unicodedata

from cryptography import x509
from django.core.exceptions import ValidationError
from email_validator import EmailNotValidError


def validate_port(value: int) -> None:
    if value is None or not 1 <= value <= 65535:
        raise ValidationError(
            "The port must be a number from 1 to 65535 (usually 587 for STARTTLS, 465 for "
            "TLS, 25 for a local relay).",
            code="port",
        )


def validate_host(value: str) -> None:
    if any(c.isspace() for c in value):
        if has_line_break(value):
            raise ValidationError(
                "The host name cannot contain a line break. Enter only the server's name, "
                "like smtp.example.com.",
                code="host",
            )
        raise ValidationError(
            "The host name cannot contain spaces. Enter only the server's name, like "
            "smtp.example.com.",
            code="host",
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or "/" in value or "@" in value:
        raise ValidationError(
            "This is not a host name. Enter only the server's name or IP address, like "
            "smtp.example.com (no scheme, path or user name).",
            code="host",
        )


# Everything Python's str.splitlines() breaks a line on, which is also what the email
# package refuses in a header value: CR and LF, but also VT, FF, the file/group/record
# separators, NEL and the Unicode line and paragraph separators.
LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def has_line_break(value: str) -> bool:
    return not LINE_BREAKS.isdisjoint(value)


def control_character(value: str) -> str | None:
    """The first control character in ``value`` other than a tab or a line break, as
    "U+0007", or None. Such a character has no place in a mail header."""
    for c in value:
        if c != "\t" and c not in LINE_BREAKS and unicodedata.category(c) == "Cc":
            return f"U+{ord(c):04X}"
    return None


def validate_single_line(value: str) -> None:
    if has_line_break(value):
        raise ValidationError(
            "This cannot contain a line break: it goes into a mail header. Put it on one line.",
            code="line_break",
        )
    if bad := control_character(value):
        raise ValidationError(
            f"This contains a control character ({bad}), which cannot go into a mail header. "
            "Remove it.",
            code="control_character",
        )


def validate_mail_address(value: str) -> None:
    from mailer.mime import validate_address

    validate_single_line(value)
    try:
        validate_address(value)
    except EmailNotValidError as exc:
        raise ValidationError(
            f"'{value}' is not a valid address: {exc}", code="address"
        ) from exc


def validate_ca_certificate(value: str) -> None:
    try:
        certs = x509.load_pem_x509_certificates(value.encode("utf-8", "replace"))
    except ValueError:
        certs = []
    if not certs:
        raise ValidationError(
            "This is not a PEM certificate. Paste the CA certificate itself, from "
            "-----BEGIN CERTIFICATE----- to -----END CERTIFICATE----- (never a private key).",
            code="certificate",
        )
