"""Forms: they validate, the views stay linear (STYLE 17)."""

from __future__ import annotations

from django import forms
from django.conf import settings

from mailer.models import Draft, ImapSettings, SmtpAccount
from webui import presets

# Account fields the form edits, in page order (the secret is a separate write-only field).
ACCOUNT_FIELDS = [
    "label", "from_name", "from_address", "reply_to",
    "host", "port", "security", "auth_mechanism", "allow_plaintext_auth", "username",
    "verify_tls", "ca_certificate",
    "quota_per_minute", "quota_per_hour", "quota_per_day",
]
_MODEL_FIELDS = {f.name for f in SmtpAccount._meta.get_fields()}

_NUL_REFUSED = (
    "contains a NUL character (a zero byte), which cannot be stored or sent: remove it and "
    "try again."
)


def one_nul_check(form: forms.BaseForm) -> None:
    """A model form's text field is checked for NUL characters twice (the form field's
    validator and the model field's, in ``_post_clean``), so a NUL byte was reported twice,
    in Django's terse words. The form field's check stays, saying what to do; the model's
    repeat is dropped by ``drop_repeated_nul_errors``."""
    from django.core.validators import ProhibitNullCharactersValidator

    for name, field in form.fields.items():
        kept = [v for v in field.validators if not isinstance(v, ProhibitNullCharactersValidator)]
        if len(kept) != len(field.validators):
            label = field.label or name.replace("_", " ").capitalize()
            field.validators = [ProhibitNullCharactersValidator(f"{label} {_NUL_REFUSED}"), *kept]


def drop_repeated_nul_errors(form: forms.BaseForm) -> None:
    for errors in form.errors.values():
        if any(_NUL_REFUSED in str(e) for e in errors):
            errors.data[:] = [e for e in errors.as_data()
                              if getattr(e, "code", None) != "null_characters_not_allowed"
                              or _NUL_REFUSED in " ".join(e.messages)]


class WriteOnlySecret:
    """For a form with a write-only ``secret`` field: a password typed into a form that
    failed is not rendered back (it would put the secret in the page); say so next to the
    field instead of blanking it silently."""

    RETYPE_SECRET = (
        "Type the password again: for your safety Mailroom never sends it back to the page, "
        "so it was cleared when the form came back with errors."
    )

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        form: forms.BaseForm = self  # type: ignore[assignment]
        if form.is_bound and form._errors and form.data.get("secret"):
            form._errors.setdefault("secret", form.error_class()).append(self.RETYPE_SECRET)


class AccountForm(WriteOnlySecret, forms.ModelForm):
    preset = forms.ChoiceField(
        required=False,
        choices=[("", "Choose a provider…")] + presets.choices(),
        help_text="Fills in host, port and security for a common provider.",
    )
    # Write-only: never rendered back (render_value=False); blank on edit keeps the stored one.
    secret = forms.CharField(
        label="Password or app password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = SmtpAccount
        fields = [f for f in ACCOUNT_FIELDS if f in _MODEL_FIELDS]
        widgets = {"ca_certificate": forms.Textarea(attrs={"rows": 4, "class": "mono"})}
        labels = {
            "label": "Name of this account",
            "from_address": "From address",
            "from_name": "From name",
            "reply_to": "Reply-To (optional)",
            "auth_mechanism": "Login method",
            "allow_plaintext_auth": "Allow the password over an unencrypted connection",
            "verify_tls": "Verify the server's certificate",
            "ca_certificate": "Extra trusted CA certificate (PEM, optional)",
        }
        help_texts = {
            "allow_plaintext_auth": "Only for a server on this machine or a trusted network.",
            "verify_tls": "Leave on. Turn off only for a test server you control.",
            "quota_per_minute": "Empty: no limit. Mail over a limit waits; it never fails.",
        }

    def _post_clean(self):
        super()._post_clean()
        drop_repeated_nul_errors(self)

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        one_nul_check(self)
        self.owner = owner
        self.fields["secret"].help_text = (
            "Stored encrypted and never shown again. Leave blank to keep the saved one."
            if self.instance.pk and self.instance.has_secret
            else "Stored encrypted and never shown again."
        )

    @staticmethod
    def preset_values() -> dict:
        return presets.field_values()

    def clean_label(self) -> str:
        label = self.cleaned_data["label"].strip()
        others = SmtpAccount.objects.filter(owner=self.owner, label=label)
        if self.instance.pk:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError(
                "You already have an account with this name. Choose another name."
            )
        return label

    def clean(self):
        data = super().clean()
        security = data.get("security")
        if security == "none" and data.get("username") and not data.get("allow_plaintext_auth"):
            self.add_error(
                "security",
                "With no encryption the password would cross the network in clear. Choose "
                "STARTTLS or TLS, or tick “Allow the password over an unencrypted connection” "
                "if the server is on a trusted network.",
            )
        return data

    def save(self, commit: bool = True) -> SmtpAccount:
        account = super().save(commit=False)
        account.owner = self.owner
        if self.cleaned_data.get("secret"):
            account.set_secret(self.cleaned_data["secret"])
        if commit:
            account.save()
        return account


class ImapForm(WriteOnlySecret, forms.ModelForm):
    """An account's IMAP side: the mailbox where sent mail is copied and delivery reports
    are read. The login defaults to the SMTP side's."""

    secret = forms.CharField(
        label="IMAP password (optional)",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    forget_secret = forms.BooleanField(
        label="Use the account's SMTP login again (forget the IMAP password)", required=False)

    class Meta:
        model = ImapSettings
        fields = ["host", "port", "security", "username", "save_to_sent", "sent_folder",
                  "track_reports", "reports_folder"]
        labels = {
            "host": "IMAP server",
            "security": "Encryption",
            "username": "IMAP username (optional)",
            "save_to_sent": "Save a copy of each sent message in the Sent folder",
            "sent_folder": "Sent folder (optional)",
            "track_reports": "Read delivery reports and bounces from the inbox and junk folder",
            "reports_folder": "Move matched reports to this folder (optional)",
        }
        help_texts = {
            "host": "For example imap.fastmail.com. The certificate is checked as for SMTP.",
            "username": "Leave blank to log in exactly as the SMTP side does (the same "
                        "username and password, or the same sign-in).",
            "save_to_sent": "Turn off for Gmail, which files what it sends itself.",
            "sent_folder": "Leave blank: Mailroom finds it (the folder the server marks as "
                           "Sent, else Sent, Sent Items, Sent Messages…).",
            "track_reports": "When a recipient's server later reports that it could not "
                             "deliver (a bounce), the recipient shows as bounced. Reports "
                             "are marked read; nothing is deleted.",
            "reports_folder": "Leave blank to leave them where they arrive.",
        }

    def _post_clean(self):
        super()._post_clean()
        drop_repeated_nul_errors(self)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        one_nul_check(self)
        self.fields["secret"].help_text = (
            "Only if the IMAP login differs from the SMTP one. Stored encrypted and never "
            "shown again" + (": leave blank to keep the saved one." if
                             self.instance.secret_encrypted else ".")
        )
        if not self.instance.secret_encrypted:
            del self.fields["forget_secret"]
        if self.instance.folders:  # the template's datalist of the folders last seen
            for name in ("sent_folder", "reports_folder"):
                self.fields[name].widget.attrs["list"] = "imap-folders"

    def new_secret(self) -> str | None:
        """The password to save: a new one, "" to forget it, None to keep what is saved."""
        if self.cleaned_data.get("forget_secret"):
            return ""
        return self.cleaned_data.get("secret") or None


class ComposeForm(forms.ModelForm):
    """The draft as typed. Saving never fails on content (a draft may be half written);
    sending validates through ``mailer.services.send_draft``, whose per-field errors are
    put next to the fields."""

    draft = forms.IntegerField(required=False, widget=forms.HiddenInput)
    send_at = forms.DateTimeField(
        required=False,
        label="Send at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )
    # Uploaded files are read from request.FILES by the view; this field carries their errors.
    attachments = forms.FileField(required=False)
    confirm_no_attachment = forms.BooleanField(
        required=False, label="Send it anyway, without an attachment"
    )

    class Meta:
        model = Draft
        fields = ["account", "to", "cc", "bcc", "reply_to", "subject", "body_text", "body_html",
                  "delivery_report"]
        labels = {
            "account": "From", "to": "To", "cc": "Cc", "bcc": "Bcc", "reply_to": "Reply-To",
            "body_text": "Message", "body_html": "HTML version (optional)",
            "delivery_report": "Ask for a delivery report",
        }
        help_texts = {
            "delivery_report": "The recipients' servers then also report when the message "
                               "was delivered (not only when it failed or is delayed). Only "
                               "where your server offers delivery reports (DSN); the reports "
                               "are read when the account has IMAP.",
        }
        widgets = {
            "to": forms.TextInput(
                attrs={
                    "autocomplete": "off",
                    "placeholder": "ann@example.com, Bob <bob@example.org>",
                }
            ),
            "cc": forms.TextInput(attrs={"autocomplete": "off"}),
            "bcc": forms.TextInput(attrs={"autocomplete": "off"}),
            "reply_to": forms.TextInput(attrs={"autocomplete": "off"}),
            "subject": forms.TextInput(),
            "body_text": forms.Textarea(attrs={"class": "body", "rows": 14}),
            "body_html": forms.Textarea(attrs={"rows": 8, "class": "mono"}),
        }

    def _post_clean(self):
        super()._post_clean()
        drop_repeated_nul_errors(self)

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        one_nul_check(self)
        accounts = SmtpAccount.objects.filter(owner=owner).order_by("-is_default", "label")
        self.fields["account"].queryset = accounts
        self.fields["account"].empty_label = None if accounts else "— no account yet —"
        self.fields["account"].required = False
        if not self.instance.pk and not self.is_bound:
            default = next((a for a in accounts if a.is_default), None)
            if default:
                self.initial["account"] = default.pk


class AttachmentUploadForm(forms.Form):
    file = forms.FileField()

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.MAILROOM_MAX_ATTACHMENT_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"“{upload.name}” is {upload.size / 1048576:.1f} MB; the limit for one "
                f"attachment is {limit / 1048576:.0f} MB. Send a smaller file or a link to it."
            )
        return upload


class OutboxFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", widget=forms.TextInput(
        attrs={"type": "search", "placeholder": "Recipient or subject"}))
    account = forms.ModelChoiceField(queryset=SmtpAccount.objects.none(), required=False,
                                     empty_label="All accounts")
    date_from = forms.DateField(required=False, label="From date",
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To date",
                              widget=forms.DateInput(attrs={"type": "date"}))
    failed_recipients = forms.BooleanField(required=False,
                                           label="Only with a failed recipient")

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = SmtpAccount.objects.filter(owner=owner)
