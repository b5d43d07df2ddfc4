"""Mailroom's data: SMTP accounts, drafts with attachments, and the outbox.

One-row logic lives here (STYLE 9); the delivery workflow is in ``mailer.delivery`` and the
state changes the UI may make are in ``mailer.services``.
"""

from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from mailer import crypto
from mailer.validators import (
    validate_ca_certificate,
    validate_host,
    validate_mail_address,
    validate_port,
    validate_single_line,
)


class SmtpAccount(models.Model):
    class Security(models.TextChoices):
        NONE = "none", "None (plaintext)"
        STARTTLS = "starttls", "STARTTLS"
        TLS = "tls", "Implicit TLS"

    class AuthMechanism(models.TextChoices):
        AUTO = "auto", "Automatic"
        PLAIN = "PLAIN", "PLAIN"
        LOGIN = "LOGIN", "LOGIN"
        XOAUTH2 = "XOAUTH2", "XOAUTH2 (OAuth2 token)"
        NONE = "none", "No authentication"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="smtp_accounts"
    )
    label = models.CharField(max_length=100)
    from_name = models.CharField(max_length=200, blank=True, validators=[validate_single_line])
    from_address = models.CharField(max_length=320, validators=[validate_mail_address])
    reply_to = models.CharField(max_length=320, blank=True, validators=[validate_mail_address])
    host = models.CharField(max_length=255, validators=[validate_host])
    port = models.IntegerField(default=587, validators=[validate_port])
    security = models.CharField(max_length=10, choices=Security.choices, default=Security.STARTTLS)
    auth_mechanism = models.CharField(
        max_length=10, choices=AuthMechanism.choices, default=AuthMechanism.AUTO
    )
    allow_plaintext_auth = models.BooleanField(default=False)
    username = models.CharField(max_length=320, blank=True)
    # The password or OAuth2 token, Fernet-encrypted (mailer.crypto); never in a page or log.
    secret_encrypted = models.TextField(blank=True, default="")
    verify_tls = models.BooleanField(default=True)
    ca_certificate = models.TextField(
        blank=True,
        help_text="PEM text of an extra trusted CA.",
        validators=[validate_ca_certificate],
    )
    quota_per_minute = models.PositiveIntegerField(null=True, blank=True)
    quota_per_hour = models.PositiveIntegerField(null=True, blank=True)
    quota_per_day = models.PositiveIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    # The development sink `manage.py up` creates: it delivers nothing, so it is never
    # chosen as the default once the owner has a real account (mailer.services).
    is_local_sink = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True)
    capabilities = models.JSONField(null=True, blank=True)
    capabilities_seen_at = models.DateTimeField(null=True, blank=True)
    throttled_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "label"], name="smtpaccount_unique_label"),
        ]
        ordering = ["label"]

    def __str__(self) -> str:
        return f"{self.label} <{self.from_address}>"

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret) if secret else ""

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2] or "localhost"

    #: Every setting that shapes an SMTP connection (where it goes, how it logs in).
    CONNECTION_FIELDS = (
        "host", "port", "security", "auth_mechanism", "allow_plaintext_auth", "username",
        "secret_encrypted", "verify_tls", "ca_certificate",
    )

    def connection_fingerprint(self) -> str:
        """A digest of every setting that shapes an SMTP connection: a cached connection
        whose fingerprint differs was opened with old settings and must not be reused."""
        parts = [str(getattr(self, name)) for name in self.CONNECTION_FIELDS]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def new_envid() -> str:
    """A message's DSN envelope id: 32 hex characters, plain xtext (RFC 3461 §4.4)."""
    return uuid.uuid4().hex


def _draft_upload_to(instance: Attachment, filename: str) -> str:
    # A generated storage name; the original name is kept in its own field (STYLE 15).
    return f"attachments/{uuid.uuid4().hex}"


class Draft(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="drafts"
    )
    account = models.ForeignKey(
        SmtpAccount, on_delete=models.SET_NULL, null=True, blank=True, related_name="drafts"
    )
    # Address fields are kept as typed (comma-separated); mailer.mime validates them.
    to = models.TextField(blank=True)
    cc = models.TextField(blank=True)
    bcc = models.TextField(blank=True)
    reply_to = models.TextField(blank=True)
    subject = models.CharField(max_length=998, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    send_at = models.DateTimeField(null=True, blank=True)
    # "Ask for a delivery report" (a DSN with NOTIFY=SUCCESS, where the server offers it).
    delivery_report = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="draft_owner_updated")]

    def __str__(self) -> str:
        return self.subject or "(no subject)"


class Attachment(models.Model):
    """A file attached to a draft. When the draft is sent the row moves to the message
    (``draft`` cleared, ``message`` set), so undo and "edit as new draft" can bring it back."""

    draft = models.ForeignKey(
        Draft, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments"
    )
    message = models.ForeignKey(
        "OutboxMessage", on_delete=models.CASCADE, null=True, blank=True,
        related_name="attachments",
    )
    file = models.FileField(upload_to=_draft_upload_to)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.filename


def _eml_upload_to(instance: OutboxMessage, filename: str) -> str:
    return f"outbox/{uuid.uuid4().hex}.eml"


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DEFERRED = "deferred", "Deferred"
        UNKNOWN = "unknown", "Outcome unknown"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        # Accepted at the first hop, then reported undeliverable for at least one recipient
        # by a delivery report (``mailer.imap.bounces``): final, and apart from FAILED.
        BOUNCED = "bounced", "Bounced"

    # States a worker may claim once next_attempt_at is due.
    PENDING_STATUSES = (Status.QUEUED, Status.SCHEDULED, Status.DEFERRED)
    FINAL_STATUSES = (Status.SENT, Status.FAILED, Status.CANCELLED, Status.UNKNOWN,
                      Status.BOUNCED)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="outbox_messages"
    )
    account = models.ForeignKey(
        SmtpAccount, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="outbox_messages",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # The frozen message: the exact bytes handed to the server on every try.
    eml = models.FileField(upload_to=_eml_upload_to)
    size = models.PositiveBigIntegerField(default=0)
    envelope_from = models.CharField(max_length=320)
    message_id = models.CharField(max_length=998)
    subject = models.CharField(max_length=998, blank=True)
    to_display = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Why a pending message waits, in plain words (paused account, quota, throttling...).
    wait_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    hold_until = models.DateTimeField(null=True, blank=True)
    # The claim (ARCHITECTURE invariant 3): set together by one conditional UPDATE.
    attempt_id = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    # What is needed to rebuild the draft (undo send, edit as new draft).
    source_draft = models.JSONField(default=dict, blank=True)
    # The DSN envelope id (RFC 3461 ENVID): opaque, random, set when queued; blank for mail
    # queued before delivery reports existed. Reports are matched by it, within the account.
    envid = models.CharField(max_length=64, blank=True, default=new_envid)
    # "Ask for a delivery report": NOTIFY=SUCCESS too, where the server offers DSN.
    delivery_report = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["owner", "status", "-created_at"], name="outbox_owner_status_created"
            ),
            # status too: a date-filtered page counts its tabs from this index alone.
            models.Index(fields=["owner", "-created_at", "status"], name="outbox_owner_created"),
            # The sweeper's two questions: what is due, and whose lease has run out.
            models.Index(
                fields=["next_attempt_at"],
                name="outbox_due_pending",
                condition=Q(status__in=["queued", "scheduled", "deferred"]),
            ),
            models.Index(
                fields=["lease_until"],
                name="outbox_sending_lease",
                condition=Q(status="sending"),
            ),
            models.Index(fields=["account", "status"], name="outbox_account_status"),
            models.Index(fields=["account", "envid"], name="outbox_account_envid"),
            models.Index(fields=["account", "message_id"], name="outbox_account_message_id"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject or '(no subject)'} [{self.status}]"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    def read_eml(self) -> bytes:
        with self.eml.open("rb") as fh:
            return fh.read()


class Recipient(models.Model):
    class Kind(models.TextChoices):
        TO = "to", "To"
        CC = "cc", "Cc"
        BCC = "bcc", "Bcc"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DEFERRED = "deferred", "Deferred"
        FAILED = "failed", "Failed"

    class Remote(models.TextChoices):
        BOUNCED = "bounced", "Bounced"
        DELAYED = "delayed", "Delayed"
        DELIVERED = "delivered", "Delivered"

    # Recipients a delivery attempt sends to: never those already accepted or failed.
    RETRY_STATUSES = (Status.PENDING, Status.DEFERRED)

    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="recipients")
    address = models.CharField(max_length=320)
    kind = models.CharField(max_length=3, choices=Kind.choices, default=Kind.TO)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    code = models.PositiveIntegerField(null=True, blank=True)
    enhanced = models.CharField(max_length=20, blank=True)
    # The server's own words (its reply text, as received), and apart from them what they
    # mean in plain words (``mailer.policy``) — the page shows both, side by side.
    text = models.TextField(blank=True)
    reason = models.TextField(blank=True, default="")
    # Past the first hop: what a delivery report (RFC 3464, or a bounce in another shape)
    # said of this recipient. ``status`` stays what the account's server said.
    remote = models.CharField(max_length=10, choices=Remote.choices, blank=True)
    remote_mta = models.CharField(max_length=255, blank=True)
    remote_status = models.CharField(max_length=20, blank=True)  # e.g. 5.1.1
    remote_code = models.PositiveIntegerField(null=True, blank=True)  # e.g. 550
    remote_text = models.TextField(blank=True)  # the remote server's words (as text)
    remote_reason = models.TextField(blank=True)  # what they mean, in plain words
    remote_at = models.DateTimeField(null=True, blank=True)
    report = models.ForeignKey("DeliveryReport", on_delete=models.SET_NULL, null=True,
                               blank=True, related_name="recipients")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.address} [{self.status}]"


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        SENT = "sent", "Sent"
        PARTIAL = "partial", "Sent, some recipients refused or deferred"
        DEFERRED = "deferred", "Deferred"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Outcome unknown"
        PAUSED = "paused", "Account paused"
        THROTTLED = "throttled", "Deferred, the provider asked to slow down"
        LEASE_EXPIRED = "lease_expired", "Worker lost (lease expired)"
        SKIPPED = "skipped", "Not attempted"

    message = models.ForeignKey(
        OutboxMessage, on_delete=models.CASCADE, related_name="delivery_attempts"
    )
    attempt_id = models.UUIDField(unique=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set right before the final chunk of DATA goes out: after it, a lost worker means
    # the server may have the message (unknown), before it a retry is safe.
    end_of_data_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=15, choices=Outcome.choices, default=Outcome.IN_PROGRESS)
    reply_code = models.PositiveIntegerField(null=True, blank=True)
    reply_enhanced = models.CharField(max_length=20, blank=True)
    reply_text = models.TextField(blank=True)
    error_class = models.CharField(max_length=100, blank=True)
    transcript = models.TextField(blank=True)
    recipients = models.JSONField(default=list, blank=True)
    connection_reused = models.BooleanField(default=False)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"attempt {self.attempt_id} [{self.outcome}]"

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class UserPreferences(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mail_preferences"
    )
    hold_seconds = models.PositiveIntegerField(default=10)

    def __str__(self) -> str:
        return f"preferences of {self.user}"

    @classmethod
    def for_user(cls, user) -> UserPreferences:
        prefs, _ = cls.objects.get_or_create(
            user=user, defaults={"hold_seconds": settings.MAILROOM_DEFAULT_HOLD_SECONDS}
        )
        return prefs


class QuotaUsage(models.Model):
    """One message counted against its account's sending quotas: the database backend of
    ``mailer.quotas`` (a sliding log; Redis keeps the same log when it is configured)."""

    account = models.ForeignKey(SmtpAccount, on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["account", "sent_at"], name="quota_account_sent")]

    def __str__(self) -> str:
        return f"account {self.account_id} at {self.sent_at:%Y-%m-%d %H:%M:%S}"


class StatusCount(models.Model):
    """Outbox messages per (owner, account, status), kept by database triggers on
    ``mailer_outboxmessage`` (``mailer.counts``): a message's arrival, departure or move
    between keys appends a row of +1 / -1, and the count of a key is the SUM of ``n`` over
    its rows. Append-only, so workers changing statuses side by side never wait for each
    other; ``mailer.counts.compact`` folds the rows of each key into one now and then.

    No foreign-key constraints: the triggers write -1 rows while a user or an account is
    being deleted, and those rows are folded away (to nothing) by the next compaction."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False,
        db_index=False, related_name="+",
    )
    account = models.ForeignKey(
        SmtpAccount, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
        null=True, blank=True, related_name="+",
    )
    status = models.CharField(max_length=10, choices=OutboxMessage.Status.choices)
    n = models.IntegerField()

    class Meta:
        # The reader's order (an owner's rows by status, to sum without sorting; the account
        # filtered in the index) and the compaction's; n included: both read only the index.
        indexes = [models.Index(fields=["owner", "status", "account", "n"], name="statuscount_key")]

    def __str__(self) -> str:
        return f"owner {self.owner_id} account {self.account_id} {self.status}: {self.n:+d}"


class AccountCheck(models.Model):
    """One "Test connection" of an account, run by a worker under one overall deadline
    (``mailer.services.start_check`` / ``run_check``); the page shows it live."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        EXPIRED = "expired", "No worker took it"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_checks"
    )
    account = models.ForeignKey(SmtpAccount, on_delete=models.CASCADE, related_name="checks")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    ok = models.BooleanField(null=True)
    # CheckResult as a dict (verdict, capabilities, redacted transcript, error): no secret.
    result = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "created_at"], name="accountcheck_owner_created"),
            models.Index(fields=["account", "-created_at"], name="accountcheck_account_latest"),
        ]

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.EXPIRED)


class OAuthToken(models.Model):
    """An account's sign-in with an OAuth2 provider (``mailer.oauth``): the refresh token
    and the current access token, both encrypted like every secret, never shown.

    ``refreshing_until`` is the refresh lease: the one worker that set it (a conditional
    UPDATE) asks the provider; the others wait for its result. The new access token and a
    rotated refresh token are then written by one UPDATE, so no crash can keep one without
    the other. ``revoked_at``: the provider refused the refresh token (invalid_grant); the
    account is paused until the user reconnects."""

    account = models.OneToOneField(SmtpAccount, on_delete=models.CASCADE, related_name="oauth")
    provider = models.CharField(max_length=50)
    subject = models.CharField(max_length=255)  # the provider's id of the user ("sub")
    email = models.CharField(max_length=320)
    refresh_encrypted = models.TextField()
    access_encrypted = models.TextField(blank=True, default="")
    access_expires_at = models.DateTimeField(null=True, blank=True)
    refreshing_until = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.provider} sign-in of {self.email}"


class OAuthSignIn(models.Model):
    """One "Sign in with …" (``mailer.oauth.signins``), from the web or the command line:
    a worker builds the provider's URL, the user signs in there, the provider sends the
    browser back with a code, and a worker exchanges it and saves the account. ``state``
    is bound to the user's session and works once; the PKCE verifier and the code are
    kept encrypted, and wiped when the sign-in ends."""

    class Status(models.TextChoices):
        PREPARING = "preparing", "Preparing the sign-in"
        AT_PROVIDER = "at_provider", "Waiting for you at the provider"
        EXCHANGING = "exchanging", "Completing the sign-in"
        DONE = "done", "Signed in"
        FAILED = "failed", "Did not work"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_sign_ins"
    )
    provider = models.CharField(max_length=50)
    # "Reconnect": the account whose tokens the sign-in renews (None: a new account).
    account = models.ForeignKey(
        SmtpAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="sign_ins"
    )
    label = models.CharField(max_length=100, blank=True, default="")  # a new account's name
    state = models.CharField(max_length=64, unique=True)
    verifier_encrypted = models.TextField(blank=True, default="")
    nonce = models.CharField(max_length=64)
    redirect_uri = models.CharField(max_length=2000)
    authorize_url = models.TextField(blank=True, default="")
    code_encrypted = models.TextField(blank=True, default="")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PREPARING)
    step_at = models.DateTimeField()  # when the current step began
    claimed_at = models.DateTimeField(null=True, blank=True)  # a worker runs the step
    message = models.TextField(blank=True, default="")  # plain words: what happened
    result = models.ForeignKey(
        SmtpAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "created_at"], name="oauthsignin_owner_created")]

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class OAuthClient(models.Model):
    """A "Sign in with …" provider set up in the Django admin instead of settings (one with
    the same key as a configured one replaces it): Mailroom's registration there (client
    id, and the secret, encrypted like every secret) and, for a generic OpenID Connect
    provider, its issuer, scopes and SMTP server. See ``mailer.oauth.providers``."""

    class Kind(models.TextChoices):
        GOOGLE = "google", "Google"
        MICROSOFT = "microsoft", "Microsoft"
        OIDC = "oidc", "OpenID Connect provider (by its issuer URL)"

    key = models.SlugField(max_length=50, unique=True,
                           help_text="Its name in Mailroom: google, microsoft, or your own.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    label = models.CharField(max_length=100, blank=True, default="",
                             help_text="Shown on the button: “Sign in with …”.")
    client_id = models.CharField(max_length=255)
    secret_encrypted = models.TextField(blank=True, default="")
    tenant = models.CharField(max_length=100, blank=True, default="",
                              help_text="Microsoft: common, organizations, consumers or a "
                              "tenant id.")
    issuer = models.URLField(max_length=500, blank=True, default="",
                             help_text="OpenID Connect: the issuer URL (discovery).")
    scopes = models.CharField(max_length=500, blank=True, default="",
                              help_text="OpenID Connect: space-separated scopes.")
    smtp_host = models.CharField(max_length=255, blank=True, default="")
    smtp_port = models.PositiveIntegerField(null=True, blank=True)
    smtp_security = models.CharField(max_length=10, blank=True, default="",
                                     choices=SmtpAccount.Security.choices)

    def __str__(self) -> str:
        return self.label or self.key

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret) if secret else ""

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""


class ImapSettings(models.Model):
    """An account's IMAP side (optional): where its mailbox is, for the copy in the Sent
    folder. The login is the SMTP side's (username, password or OAuth2 sign-in) unless set
    here; certificates are verified exactly as for SMTP (the account's CA option)."""

    class Security(models.TextChoices):
        TLS = "tls", "Implicit TLS"
        STARTTLS = "starttls", "STARTTLS"

    account = models.OneToOneField(SmtpAccount, on_delete=models.CASCADE, related_name="imap")
    host = models.CharField(max_length=255, validators=[validate_host])
    port = models.IntegerField(default=993, validators=[validate_port])
    security = models.CharField(max_length=10, choices=Security.choices, default=Security.TLS)
    # Blank: the SMTP side's login.
    username = models.CharField(max_length=320, blank=True)
    secret_encrypted = models.TextField(blank=True, default="")
    save_to_sent = models.BooleanField(default=True)
    # Blank: found by SPECIAL-USE \Sent, else by the usual names.
    sent_folder = models.CharField(max_length=255, blank=True)
    # Bounce tracking: INBOX and the Junk folder are read for delivery reports.
    track_reports = models.BooleanField(default=True)
    # Where matched reports are moved (blank: left where they are, flagged \Seen).
    reports_folder = models.CharField(max_length=255, blank=True)
    # Per folder read: {"INBOX": [uidvalidity, last uid seen]}.
    cursors = models.JSONField(default=dict, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True)
    poll_claimed_until = models.DateTimeField(null=True, blank=True)
    poll_detail = models.TextField(blank=True)  # the last poll's problem, in plain words
    capabilities = models.JSONField(null=True, blank=True)
    folders = models.JSONField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Mail accepted before this moment is not copied (the copy starts when IMAP is set up).
    enabled_at = models.DateTimeField(auto_now_add=True)

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret) if secret else ""

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted) if self.secret_encrypted else ""


class SentCopy(models.Model):
    """The copy of one accepted message in its account's Sent folder (``mailer.imap``).
    Created by the worker that first tries to save it; retried with backoff; never
    touches the message's delivery state."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be saved"
        SAVED = "saved", "Saved"
        FAILED = "failed", "Not saved"

    message = models.OneToOneField(OutboxMessage, on_delete=models.CASCADE,
                                   related_name="sent_copy")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    folder = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True)  # plain words, with the server's own
    saved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="sentcopy_due")]


def _report_upload_to(instance: DeliveryReport, filename: str) -> str:
    return f"reports/{uuid.uuid4().hex}.eml"


class DeliveryReport(models.Model):
    """A delivery report (or bounce) found in an account's mailbox and matched to one of
    that account's messages; its raw bytes are kept for download."""

    class Kind(models.TextChoices):
        STANDARD = "standard", "Delivery status notification (RFC 3464)"
        OTHER = "other", "Bounce message"

    account = models.ForeignKey(SmtpAccount, on_delete=models.CASCADE,
                                related_name="delivery_reports")
    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE,
                                related_name="delivery_reports")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    folder = models.CharField(max_length=255)
    uidvalidity = models.BigIntegerField()
    uid = models.BigIntegerField()
    raw = models.FileField(upload_to=_report_upload_to)
    # SHA-256 of the raw bytes: the same report found again (under a new UIDVALIDITY, or
    # copied to another folder) is recognised, not counted twice.
    digest = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField(default=0)
    subject = models.CharField(max_length=998, blank=True)
    reporting_mta = models.CharField(max_length=255, blank=True)
    arrived_at = models.DateTimeField(null=True, blank=True)  # the report's Date
    found_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["found_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "folder", "uidvalidity", "uid"],
                                    name="report_once_per_mailbox_uid"),
            models.UniqueConstraint(fields=["account", "digest"], name="report_once_per_bytes"),
        ]
