"""The delivery policy table (mailer.policy): each row of the issue, as the client reports it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailer import policy
from mailer.policy import Action
from mailer.smtp import errors
from mailer.smtp.replies import RecipientResult, Reply

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def reply(line: str) -> Reply:
    """'550 5.1.1 No such user' -> Reply, parsed the way the client parses it."""
    code, _, rest = line.partition(" ")
    return Reply.from_lines(int(code), [rest])


@pytest.mark.parametrize(
    ("phase", "line", "action", "rule"),
    [
        # throttling: 4.7.x, 421, 454 slow the account
        ("mail", "451 4.7.1 Too many messages, slow down", Action.THROTTLE_ACCOUNT, "4.7.x"),
        ("greeting", "421 Too many connections from your IP", Action.THROTTLE_ACCOUNT, "421/454"),
        ("auth", "454 4.7.0 Too many login attempts", Action.THROTTLE_ACCOUNT, "4.7.x"),
        ("auth", "454 Temporary authentication failure", Action.THROTTLE_ACCOUNT, "421/454"),
        ("after-data", "421 4.7.0 Try again later", Action.THROTTLE_ACCOUNT, "4.7.x"),
        # bad credentials and friends pause the account
        ("auth", "535 5.7.8 Username and Password not accepted", Action.PAUSE_ACCOUNT, "5.7.8"),
        ("auth", "535 Authentication failed", Action.PAUSE_ACCOUNT, "535"),
        ("auth", "534 5.7.9 Please log in with your web browser", Action.PAUSE_ACCOUNT, "5.7.9"),
        ("auth", "534 Mechanism too weak", Action.PAUSE_ACCOUNT, "534"),
        ("auth", "538 5.7.11 Encryption required", Action.PAUSE_ACCOUNT, "5.7.11"),
        ("auth", "538 Encryption required for requested authentication mechanism",
         Action.PAUSE_ACCOUNT, "538"),
        # Microsoft 365 with SMTP AUTH disabled: the enhanced code is not one we list, the
        # phase says it is the login that was refused.
        ("auth", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled",
         Action.PAUSE_ACCOUNT, "535"),
        ("auth", "504 5.5.4 Unrecognized authentication type", Action.PAUSE_ACCOUNT,
         "auth-refused"),
        # size: never retried
        ("data", "552 5.3.4 Message size exceeds fixed maximum", Action.TOO_BIG, "5.3.4"),
        ("after-data", "552 Message too large", Action.TOO_BIG, "552"),
        ("mail", "552 Message size exceeds maximum permitted", Action.TOO_BIG, "552"),
        # no such mailbox: that recipient only
        ("rcpt", "550 5.1.1 No such user", Action.FAIL_RECIPIENT, "5.1.1"),
        ("rcpt", "550 Mailbox unavailable", Action.FAIL_RECIPIENT, "550-rcpt"),
        ("rcpt", "553 5.1.3 Bad recipient address syntax", Action.FAIL_RECIPIENT,
         "rcpt-permanent"),
        # too many recipients: the rest in another transaction
        ("rcpt", "452 4.5.3 Too many recipients", Action.SPLIT_RECIPIENTS, "too-many-recipients"),
        ("rcpt", "452 Too many recipients", Action.SPLIT_RECIPIENTS, "452/552-rcpt"),
        ("rcpt", "552 Too many recipients", Action.SPLIT_RECIPIENTS, "452/552-rcpt"),
        ("rcpt", "552 5.5.3 Too many recipients", Action.SPLIT_RECIPIENTS, "too-many-recipients"),
        # ...but a full mailbox said with 552 at RCPT is that recipient's problem
        ("rcpt", "552 5.2.2 Mailbox full", Action.FAIL_RECIPIENT, "rcpt-permanent"),
        # other 4xx defer, other 5xx fail
        ("rcpt", "450 4.2.1 Mailbox busy", Action.DEFER, "rcpt-transient"),
        ("mail", "451 4.3.0 Local error in processing", Action.DEFER, "transient-reply"),
        ("data", "554 5.6.0 Message content rejected", Action.FAIL_MESSAGE, "permanent-reply"),
        ("mail", "550 5.7.1 Sender address not owned by user", Action.FAIL_MESSAGE,
         "permanent-reply"),
        # a refused session is the server's state: wait
        ("greeting", "554 No SMTP service here", Action.DEFER, "session-refused"),
        ("ehlo", "550 Go away", Action.DEFER, "session-refused"),
        ("starttls", "454 4.7.0 TLS not available due to temporary reason", Action.DEFER,
         "starttls-temporary"),
        # a success is a success
        ("after-data", "250 2.0.0 Ok: queued as 4F2A1", Action.DELIVER_OK, "accepted"),
    ],
)
def test_it_maps_each_reply_to_its_action(phase, line, action, rule):
    r = reply(line)
    decision = policy.classify(phase, r.code, r.enhanced, r.text)
    assert (decision.action, decision.rule) == (action, rule)
    # the reason is plain words followed by the server's own words
    assert decision.reason.endswith(f"The server said: “{r}”")


def test_it_reads_the_enhanced_code_before_the_basic_code():
    # 554 alone would fail the message; 5.3.4 on a 554 says it is the size, 5.7.8 on a 550
    # says it is the login.
    assert policy.classify("data", 554, "5.3.4", "Message too big").action is Action.TOO_BIG
    assert policy.classify("data", 554, "5.6.0", "Rejected").action is Action.FAIL_MESSAGE
    assert policy.classify("mail", 550, "5.7.8", "Bad login").rule == "5.7.8"


def test_authentication_required_pauses_the_account():
    for text in ("5.7.0 Authentication required", "5.7.0 Must issue a STARTTLS command first",
                 "5.7.57 Client not authenticated to send mail"):
        r = reply(f"530 {text}")
        decision = policy.classify("mail", r.code, r.enhanced, r.text)
        assert (decision.action, decision.rule) == (Action.PAUSE_ACCOUNT, "530")


@pytest.mark.parametrize(
    ("exc", "action", "rule"),
    [
        (errors.SMTPOutcomeUnknown("Lost after the data."), Action.UNKNOWN, "outcome-unknown"),
        (errors.SMTPCertificateError("Certificate verify failed.", phase="starttls"),
         Action.PAUSE_ACCOUNT, "certificate"),
        (errors.SMTPStartTLSNotSupported("No STARTTLS.", phase="ehlo"), Action.PAUSE_ACCOUNT,
         "starttls-missing"),
        (errors.SMTPPlaintextAuthRefused("No TLS.", phase="auth"), Action.PAUSE_ACCOUNT,
         "plaintext-auth"),
        (errors.SMTPAuthNotSupported("No mechanism.", phase="auth"), Action.PAUSE_ACCOUNT,
         "auth-mechanism"),
        (errors.SMTPAuthenticationError("Refused.", phase="auth",
                                        reply=reply("535 5.7.8 Bad credentials")),
         Action.PAUSE_ACCOUNT, "5.7.8"),
        (errors.SMTPTokenRefused("Refused.", phase="auth", reply=reply(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
            "for the Mailbox")), Action.PAUSE_ACCOUNT, "oauth-smtp-refused"),
        (errors.SMTPAuthenticationError("Busy.", phase="auth", reply=reply("454 4.7.0 Later")),
         Action.THROTTLE_ACCOUNT, "4.7.x"),
        (errors.SMTPNotSupported("No SMTPUTF8.", phase="mail"), Action.FAIL_MESSAGE,
         "extension-missing"),
        (errors.SMTPCommandArgumentError("CR in address.", phase="rcpt"), Action.FAIL_MESSAGE,
         "bad-argument"),
        (errors.SMTPConnectError("Refused."), Action.DEFER, "network"),
        (errors.SMTPServerDisconnected("Closed.", phase="data"), Action.DEFER, "network"),
        (errors.SMTPTimeoutError("Timed out.", phase="rcpt"), Action.DEFER, "network"),
        (errors.SMTPTLSError("Handshake failed.", phase="starttls"), Action.DEFER, "network"),
        (errors.SMTPProtocolError("Garbage.", phase="mail"), Action.DEFER, "network"),
        (errors.SMTPGreetingError("Busy.", phase="greeting", reply=reply("421 Busy")),
         Action.THROTTLE_ACCOUNT, "421/454"),
        (errors.SMTPSenderRefused("Refused.", sender="a@example.com", phase="mail",
                                  reply=reply("451 4.3.0 Try later")), Action.DEFER,
         "transient-reply"),
        (ConnectionResetError("reset by peer"), Action.DEFER, "network"),
        (TimeoutError("timed out"), Action.DEFER, "network"),
    ],
)
def test_it_classifies_client_errors(exc, action, rule):
    decision = policy.classify_error(exc)
    assert (decision.action, decision.rule) == (action, rule)
    assert decision.error_class == type(exc).__name__


def test_a_refused_token_says_what_to_change_at_the_provider():
    refused = errors.SMTPTokenRefused("Refused.", phase="auth", reply=reply("535 5.7.3 No"))
    assert "turned off for this mailbox" in policy.classify_error(refused).reason
    refused.hint = "Turn on Authenticated SMTP in the admin center."
    reason = policy.classify_error(refused).reason
    assert reason.startswith("The provider renewed the sign-in, but the mail server refused "
                             "its token. Turn on Authenticated SMTP in the admin center.")
    assert "The server said: “535 5.7.3 No”" in reason


def test_it_says_the_servers_size_limit():
    exc = errors.SMTPMessageTooLarge(
        "Too large.", phase="mail", limit=10_485_760, reply=reply("552 5.3.4 Too big")
    )
    decision = policy.classify_error(exc)
    assert decision.action is Action.TOO_BIG
    assert decision.limit == 10_485_760
    assert "larger than the server accepts (10.5 MB)" in decision.reason
    assert not decision.retries_automatically and not decision.waits
    # a limit known only from the capability snapshot can be passed in
    decision = policy.classify("data", 552, "5.3.4", "Too big", limit=20_000_000)
    assert "(20.0 MB)" in decision.reason


def test_it_decides_per_recipient():
    accepted = RecipientResult("a@example.com", True, reply("250 2.1.5 Ok"))
    unknown = RecipientResult("b@example.com", False, reply("550 5.1.1 No such user"))
    busy = RecipientResult("c@example.com", False, reply("452 4.5.3 Too many recipients"))
    assert policy.classify_recipient(accepted.reply).action is Action.DELIVER_OK
    assert policy.classify_recipient(unknown.reply).action is Action.FAIL_RECIPIENT
    assert policy.classify_recipient(busy.reply).action is Action.SPLIT_RECIPIENTS


def test_an_unforeseen_error_waits_rather_than_fails():
    decision = policy.classify_error(RuntimeError("surprise"))
    assert (decision.action, decision.rule) == (Action.DEFER, "default")
    assert decision.retries_automatically


def test_unknown_is_never_retried_unless_the_setting_says_so(settings):
    decision = policy.classify_error(errors.SMTPOutcomeUnknown("Lost."))
    settings.MAILROOM_RETRY_UNKNOWN = False
    assert not decision.retries_automatically and not decision.waits
    settings.MAILROOM_RETRY_UNKNOWN = True
    assert decision.retries_automatically and decision.waits


def test_which_actions_wait_and_which_are_final():
    def d(phase, line):
        r = reply(line)
        return policy.classify(phase, r.code, r.enhanced, r.text)

    paused = d("auth", "535 5.7.8 Bad credentials")
    assert paused.waits and not paused.retries_automatically and paused.is_account_fault
    throttled = d("mail", "421 4.7.0 Slow down")
    assert throttled.waits and throttled.retries_automatically and throttled.is_account_fault
    failed = d("data", "554 5.6.0 Rejected")
    assert not failed.waits and not failed.is_account_fault
    assert d("mail", "451 4.3.0 Later").retries_automatically


def test_reasons_say_what_to_do():
    paused = policy.classify("auth", 535, "5.7.8", "Username and Password not accepted")
    assert "app password" in paused.reason
    assert "resumes it" in paused.reason
    cert = policy.classify_error(errors.SMTPCertificateError("bad cert", phase="starttls"))
    assert "CA certificate" in cert.reason and "The server said" not in cert.reason


def test_a_new_rule_is_one_row():
    # The table is data: a rule for a provider quirk is one more row, read in order.
    quirk = policy.Rule("daily-limit", Action.THROTTLE_ACCOUNT, "Daily limit reached.",
                        phases=("mail",), codes=(550,), enhanced="5.4.5")
    outcome = policy._Outcome("mail", 550, "5.4.5", "Daily sending quota exceeded", ())
    assert quirk.matches(outcome)
    assert not quirk.matches(policy._Outcome("rcpt", 550, "5.4.5", "", ()))
    assert not quirk.matches(policy._Outcome("mail", 550, "5.1.1", "", ()))


# --- timing --------------------------------------------------------------------------------


def test_backoff_is_about_the_message_age_clamped(settings):
    settings.MAILROOM_MIN_BACKOFF_SECONDS = 300
    settings.MAILROOM_MAX_BACKOFF_SECONDS = 4000
    assert policy.backoff(T0, T0 + timedelta(seconds=10)) == timedelta(seconds=300)
    assert policy.backoff(T0, T0 + timedelta(seconds=1000)) == timedelta(seconds=1000)
    assert policy.backoff(T0, T0 + timedelta(days=1)) == timedelta(seconds=4000)


def test_gaps_double_until_the_maximum(settings):
    settings.MAILROOM_MIN_BACKOFF_SECONDS = 300
    settings.MAILROOM_MAX_BACKOFF_SECONDS = 4000
    now, gaps = T0, []
    for _ in range(6):
        later = policy.next_try(T0, now)
        gaps.append((later - now).total_seconds())
        now = later
    assert gaps == [300, 300, 600, 1200, 2400, 4000]


def test_a_message_past_its_maximum_age_expires(settings):
    settings.MAILROOM_MAX_MESSAGE_AGE_SECONDS = 3600
    assert not policy.expired(T0, T0 + timedelta(seconds=3599))
    assert policy.expired(T0, T0 + timedelta(seconds=3600))
    # The last try is at the maximum age, not a backoff past it.
    assert policy.next_try(T0, T0 + timedelta(minutes=50)) == T0 + timedelta(hours=1)


def test_a_throttled_account_is_given_more_and_more_room(settings):
    settings.MAILROOM_THROTTLE_SECONDS = 60
    settings.MAILROOM_MAX_BACKOFF_SECONDS = 4000
    spacings = [policy.throttle_delay(n).total_seconds() for n in range(0, 9)]
    assert spacings == [60, 60, 120, 240, 480, 960, 1920, 3840, 4000]
    assert policy.throttle_delay(10_000) == timedelta(seconds=4000)
    assert policy.throttle_window() == timedelta(hours=1)


def test_a_later_report_is_said_in_plain_words():
    from mailer.policy import report_reason

    assert "does not exist there. Check it for typos" in report_reason("bounced", "5.1.1")
    assert "mailbox is full" in report_reason("bounced", "5.2.2")
    assert "its policy refused" in report_reason("bounced", "5.7.1")
    assert "gave up on the message" in report_reason("bounced", "")
    for state in ("bounced", "delayed", "delivered"):
        words = report_reason(state, "5.1.1")
        assert words.endswith(".") and "Mailroom will try" not in words
    assert "not a failure" in report_reason("delayed", "4.4.1")
    assert "was delivered" in report_reason("delivered", "2.0.0")
