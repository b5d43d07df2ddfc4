"""SASL encoders and the mechanism choice, without sockets."""

from __future__ import annotations

import base64
import hmac

import pytest

from mailer.smtp import auth, errors


def b64d(text: str) -> bytes:
    return base64.b64decode(text)


def test_it_encodes_plain_as_an_initial_response():
    steps = auth.exchange("PLAIN", "user", "pässword")
    assert b64d(next(steps)) == "\0user\0pässword".encode()


def test_it_answers_login_prompts():
    steps = auth.exchange("LOGIN", "user", "pw")
    assert next(steps) is None
    assert b64d(steps.send(b"Username:")) == b"user"
    assert b64d(steps.send(b"Password:")) == b"pw"


def test_it_answers_login_when_the_server_asks_for_the_password_first():
    steps = auth.exchange("LOGIN", "user", "pw")
    next(steps)
    assert b64d(steps.send(b"Password:")) == b"pw"


def test_it_computes_cram_md5():
    steps = auth.exchange("CRAM-MD5", "tim", "tanstaaftanstaaf")
    assert next(steps) is None
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    # RFC 2195's own example.
    assert b64d(steps.send(challenge)) == b"tim b913a602c7eda7a495b4e6e7334d3890"
    digest = hmac.new(b"tanstaaftanstaaf", challenge, "md5").hexdigest()
    assert digest == "b913a602c7eda7a495b4e6e7334d3890"


def test_it_answers_a_failed_xoauth2_with_an_empty_line():
    steps = auth.exchange("XOAUTH2", "me@example.org", "ya29.token")
    assert b64d(next(steps)) == b"user=me@example.org\x01auth=Bearer ya29.token\x01\x01"
    assert steps.send(b'{"status":"400"}') == ""


def test_it_encodes_oauthbearer_and_answers_a_failure_with_ctrl_a():
    steps = auth.exchange("OAUTHBEARER", "me@example.org", "tok", host="smtp.example.org", port=587)
    assert b64d(next(steps)) == (
        b"n,a=me@example.org,\x01host=smtp.example.org\x01port=587\x01auth=Bearer tok\x01\x01"
    )
    assert b64d(steps.send(b'{"status":"invalid_token"}')) == b"\x01"


@pytest.mark.parametrize(
    ("requested", "offered", "encrypted", "expected"),
    [
        ("auto", ("LOGIN", "PLAIN", "CRAM-MD5"), True, "PLAIN"),
        ("auto", ("LOGIN", "PLAIN", "CRAM-MD5"), False, "CRAM-MD5"),
        ("auto", ("LOGIN",), True, "LOGIN"),
        ("auto", ("XOAUTH2",), True, None),
        ("xoauth2", ("XOAUTH2", "PLAIN"), True, "XOAUTH2"),
        ("CRAM-MD5", ("PLAIN",), True, None),
        ("GSSAPI", ("GSSAPI",), True, None),
    ],
)
def test_it_chooses_the_mechanism(requested, offered, encrypted, expected):
    assert auth.choose_mechanism(requested, offered, encrypted=encrypted) == expected


@pytest.mark.parametrize("bad", ["a\r\nb", "a\nb", "a\x00b", "a\x01b"])
def test_it_refuses_control_characters_in_credentials(bad):
    with pytest.raises(errors.SMTPCommandArgumentError):
        auth.exchange("PLAIN", bad, "pw")
    with pytest.raises(errors.SMTPCommandArgumentError):
        auth.exchange("XOAUTH2", "user", bad)
