"""Reply parsing without sockets (RFC 5321 section 4.2, RFC 3463 enhanced codes)."""

from __future__ import annotations

import io

import pytest

from mailer.smtp import Reply, errors
from mailer.smtp.replies import MAX_LINE_LENGTH, parse_reply_lines, read_reply


def read(data: bytes) -> Reply:
    return read_reply(io.BytesIO(data).readline, phase="mail")


def test_it_parses_a_single_line_reply_with_an_enhanced_code():
    reply = read(b"550 5.1.1 No such user here\r\n")
    assert reply.code == 550
    assert reply.enhanced == "5.1.1"
    assert reply.text == "No such user here"
    assert reply.lines == ("5.1.1 No such user here",)
    assert reply.is_permanent and not reply.is_transient and not reply.is_success
    assert str(reply) == "550 5.1.1 No such user here"
    assert reply.to_dict() == {
        "code": 550,
        "enhanced": "5.1.1",
        "text": "No such user here",
        "lines": ["5.1.1 No such user here"],
    }


def test_it_joins_multi_line_replies_and_strips_the_code_from_each_line():
    reply = read(b"451-4.3.0 Try again\r\n451-4.3.0 later\r\n451 4.3.0 please\r\n")
    assert reply.code == 451 and reply.enhanced == "4.3.0"
    assert reply.text == "Try again\nlater\nplease"
    assert reply.is_transient
    assert str(reply) == "451 4.3.0 Try again later please"


def test_it_ignores_an_enhanced_code_of_the_wrong_class():
    reply = read(b"250 5.0.0 odd but fine\r\n")
    assert reply.enhanced is None
    assert reply.text == "5.0.0 odd but fine"


def test_it_accepts_a_bare_code_and_lf_line_ends():
    assert read(b"250\n") == Reply(code=250, enhanced=None, text="", lines=("",))
    assert read(b"354 go ahead\n").code == 354


def test_it_stops_at_the_last_line_and_leaves_the_rest_unread():
    stream = io.BytesIO(b"250 one\r\n250 two\r\n")
    assert read_reply(stream.readline).text == "one"
    assert stream.read() == b"250 two\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n",
        b"25\r\n",
        b"2500 x\r\n",
        b"250_x\r\n",
        b"650 nope\r\n",
        b"250-a\r\n251 b\r\n",
        b"x" * (MAX_LINE_LENGTH + 10) + b"\r\n",
        b"250-x\r\n" * 200 + b"250 x\r\n",
    ],
)
def test_it_refuses_malformed_or_oversize_replies(data):
    with pytest.raises(errors.SMTPProtocolError) as caught:
        read(data)
    assert caught.value.transient and caught.value.phase == "mail"


@pytest.mark.parametrize("data", [b"", b"250-more to come\r\n", b"250 no line end"])
def test_it_reports_a_closed_connection_mid_reply(data):
    with pytest.raises(errors.SMTPServerDisconnected):
        read(data)


def test_it_parses_a_list_of_lines():
    assert parse_reply_lines([b"221 2.0.0 Bye\r\n"]).enhanced == "2.0.0"


def test_it_replaces_control_characters_in_the_text():
    assert "\x1b" not in read(b"250 evil \x1b[31m red\r\n").text
