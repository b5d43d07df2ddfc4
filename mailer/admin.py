from django import forms
from django.contrib import admin

from mailer.models import (
    Attachment,
    DeliveryAttempt,
    Draft,
    OAuthClient,
    OAuthToken,
    OutboxMessage,
    Recipient,
    SmtpAccount,
    UserPreferences,
)


@admin.register(SmtpAccount)
class SmtpAccountAdmin(admin.ModelAdmin):
    list_display = ("label", "owner", "from_address", "host", "port", "security", "paused_at")
    list_filter = ("security",)
    search_fields = ("label", "from_address", "host", "owner__username")
    # The secret is never shown, not even as ciphertext.
    exclude = ("secret_encrypted",)
    readonly_fields = ("capabilities", "capabilities_seen_at", "created_at", "updated_at")


class AttachmentInline(admin.TabularInline):
    model = Attachment
    fk_name = "draft"
    extra = 0
    readonly_fields = ("filename", "content_type", "size", "sha256")


@admin.register(Draft)
class DraftAdmin(admin.ModelAdmin):
    list_display = ("subject", "owner", "account", "updated_at")
    search_fields = ("subject", "owner__username")
    inlines = [AttachmentInline]


class RecipientInline(admin.TabularInline):
    model = Recipient
    extra = 0
    readonly_fields = ("address", "kind", "status", "code", "enhanced", "text", "updated_at")
    can_delete = False


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    fields = ("started_at", "finished_at", "end_of_data_at", "outcome", "reply_code",
              "reply_enhanced", "reply_text", "error_class", "worker")
    readonly_fields = fields
    can_delete = False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    # Delivery state changes go through mailer.services; the admin only shows it.
    list_display = ("id", "subject", "owner", "account", "status", "attempts", "next_attempt_at",
                    "created_at")
    list_filter = ("status",)
    search_fields = ("subject", "message_id", "to_display", "owner__username")
    list_select_related = ("owner", "account")
    inlines = [RecipientInline, DeliveryAttemptInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(UserPreferences)
class UserPreferencesAdmin(admin.ModelAdmin):
    list_display = ("user", "hold_seconds")


class OAuthClientForm(forms.ModelForm):
    client_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown again. Leave empty to keep the saved one.",
    )

    class Meta:
        model = OAuthClient
        exclude = ("secret_encrypted",)

    def save(self, commit: bool = True):
        row = super().save(commit=False)
        if self.cleaned_data.get("client_secret"):
            row.set_secret(self.cleaned_data["client_secret"])
        if commit:
            row.save()
        return row


@admin.register(OAuthClient)
class OAuthClientAdmin(admin.ModelAdmin):
    """"Sign in with …" providers set up here instead of in settings (a row replaces the
    setting of the same key)."""

    form = OAuthClientForm
    list_display = ("key", "kind", "label", "enabled", "client_id")


@admin.register(OAuthToken)
class OAuthTokenAdmin(admin.ModelAdmin):
    """Who each OAuth2 account signed in as; the tokens themselves are never shown."""

    list_display = ("account", "provider", "email", "access_expires_at", "revoked_at")
    exclude = ("refresh_encrypted", "access_encrypted")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.exclude]

    def has_add_permission(self, request):
        return False
