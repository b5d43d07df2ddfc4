"""One place decides transient vs permanent: errors.is_transient."""

from __future__ import annotations

import socket

import pytest

from mailer.smtp import Reply, SendResult, errors
from mailer.smtp.replies import RecipientResult

R451 = Reply.from_lines(451, ["4.3.0 Try later"])
R550 = Reply.from_lines(550, ["5.1.1 No such user"])


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (errors.SMTPConnectError("x"), True),
        (errors.SMTPServerDisconnected("x"), True),
        (errors.SMTPTimeoutError("x"), True),
        (errors.SMTPTLSError("x"), True),
        (errors.SMTPCertificateError("x"), False),
        (errors.SMTPStartTLSNotSupported("x"), False),
        (errors.SMTPGreetingError("x", reply=R451), True),
        (errors.SMTPGreetingError("x", reply=R550), False),
        (errors.SMTPAuthenticationError("x", reply=Reply.from_lines(454, ["4.7.0 x"])), True),
        (errors.SMTPAuthenticationError("x", reply=Reply.from_lines(535, ["5.7.8 x"])), False),
        (errors.SMTPAuthNotSupported("x"), False),
        (errors.SMTPPlaintextAuthRefused("x"), False),
        (errors.SMTPSenderRefused("x", sender="a", reply=R451), True),
        (errors.SMTPSenderRefused("x", sender="a", reply=R550), False),
        (errors.SMTPDataError("x", reply=R451), True),
        (errors.SMTPDataError("x", reply=R550), False),
        (errors.SMTPMessageTooLarge("x", limit=10), False),
        (errors.SMTPNotSupported("x"), False),
        (errors.SMTPProtocolError("x"), True),
        (errors.SMTPOutcomeUnknown("x"), False),
        (errors.SMTPCommandArgumentError("x"), False),
        (ConnectionResetError(), True),
        (socket.gaierror(), True),
        (TimeoutError(), True),
        (ValueError(), False),
    ],
)
def test_it_decides_retry_or_give_up(error, transient):
    assert errors.is_transient(error) is transient


def test_it_decides_all_refused_recipients_by_their_codes():
    def refused(*replies):
        result = SendResult([RecipientResult(f"r{i}", False, r) for i, r in enumerate(replies)])
        return errors.SMTPRecipientsRefused("x", result=result)

    assert refused(R451, R451).transient
    assert not refused(R451, R550).transient


def test_it_keeps_the_standard_exception_families():
    assert issubclass(errors.SMTPConnectError, ConnectionError)
    assert issubclass(errors.SMTPServerDisconnected, ConnectionError)
    assert issubclass(errors.SMTPTimeoutError, TimeoutError)
    assert issubclass(errors.SMTPCertificateError, errors.SMTPTLSError)
    assert issubclass(errors.SMTPCommandArgumentError, ValueError)
    assert all(
        issubclass(getattr(errors, name), errors.SMTPError)
        for name in errors.__all__
        if name.startswith("SMTP")
    )


def test_it_says_the_server_words_and_serialises():
    error = errors.SMTPSenderRefused(
        "The server refused the sender.", sender="a", reply=R550, phase="mail"
    )
    assert str(error) == "The server refused the sender. The server said: 550 5.1.1 No such user"
    assert error.to_dict() == {
        "error": "SMTPSenderRefused",
        "message": str(error),
        "phase": "mail",
        "transient": False,
        "reply": R550.to_dict(),
    }
    assert errors.SMTPOutcomeUnknown("lost").phase == "after-data"
