"""Field validators for account settings: a bad value is refused when it is saved, next to
the field, instead of making every later send fail."""

from __future__ import annotations

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
        if any(c in value for c in "\r\n"):
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


def validate_single_line(value: str) -> None:
    if any(c in value for c in "\r\n"):
        raise ValidationError(
            "This cannot contain a line break: it goes into a mail header. Put it on one line.",
            code="line_break",
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
