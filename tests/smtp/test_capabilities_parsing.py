"""EHLO parsing without sockets."""

from __future__ import annotations

from mailer.smtp import Capabilities, Reply


def ehlo(*lines: str) -> Capabilities:
    return Capabilities.from_ehlo(Reply.from_lines(250, list(lines)))


def test_it_parses_keywords_parameters_auth_and_size():
    caps = ehlo(
        "mx.example.org Hello",
        "PIPELINING",
        "SIZE 35882577",
        "8bitmime",
        "AUTH LOGIN PLAIN XOAUTH2",
        "AUTH=LOGIN",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "SMTPUTF8",
        "DSN",
        "STARTTLS",
    )
    assert caps.esmtp
    assert caps.auth == ("LOGIN", "PLAIN", "XOAUTH2")
    assert caps.size == 35882577
    assert caps.pipelining and caps.chunking and caps.smtputf8 and caps.eightbitmime
    assert caps.dsn and caps.starttls and caps.enhancedstatuscodes
    assert "MX.EXAMPLE.ORG" not in caps.extensions
    snapshot = caps.to_dict()
    assert snapshot["size"] == 35882577 and snapshot["auth"] == ["LOGIN", "PLAIN", "XOAUTH2"]
    assert snapshot["extensions"]["SIZE"] == "35882577"


def test_it_reads_the_old_auth_equals_form():
    caps = ehlo("old.example", "AUTH=LOGIN PLAIN")
    assert caps.auth == ("LOGIN", "PLAIN")


def test_it_treats_size_zero_or_missing_as_no_limit():
    assert ehlo("x", "SIZE").size is None
    assert ehlo("x", "SIZE 0").size is None
    assert ehlo("x", "SIZE").to_dict()["extensions"] == {"SIZE": ""}


def test_it_skips_garbage_keywords():
    caps = ehlo("x", "!!bad", "", "GOOD-ONE param")
    assert caps.extensions == {"GOOD-ONE": "param"}


def test_it_knows_nothing_after_helo():
    caps = Capabilities.from_helo()
    assert not caps.esmtp and not caps.pipelining and caps.size is None and caps.auth == ()
