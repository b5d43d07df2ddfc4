from django.urls import path

from webui.views import accounts, auth, compose, home, imap, oauth, outbox, preferences

urlpatterns = [
    path("login/", auth.login, name="login"),
    path("logout/", auth.logout, name="logout"),
    path("", home.home, name="home"),
    path("preferences/", preferences.preferences, name="preferences"),
    # Accounts
    path("accounts/", accounts.account_list, name="accounts"),
    path("accounts/new/", accounts.account_add, name="account_add"),
    path("accounts/<int:pk>/", accounts.account_detail, name="account"),
    path("accounts/<int:pk>/edit/", accounts.account_edit, name="account_edit"),
    path("accounts/<int:pk>/delete/", accounts.account_delete, name="account_delete"),
    path("accounts/<int:pk>/default/", accounts.account_set_default, name="account_default"),
    path("accounts/<int:pk>/check/", accounts.account_check, name="account_check"),
    path("accounts/<int:pk>/check/status/", accounts.account_check_status,
         name="account_check_status"),
    path("accounts/<int:pk>/resume/", accounts.account_resume, name="account_resume"),
    path("accounts/<int:pk>/test-message/", accounts.account_send_test, name="account_send_test"),
    path("accounts/<int:pk>/imap/", imap.account_imap, name="account_imap"),
    path("accounts/<int:pk>/imap/remove/", imap.account_imap_remove, name="account_imap_remove"),
    # "Sign in with …" (OAuth2)
    path("accounts/oauth/callback/", oauth.oauth_callback, name="oauth_callback"),
    path("accounts/oauth/<int:pk>/", oauth.oauth_sign_in, name="oauth_sign_in"),
    path("accounts/oauth/<slug:provider>/start/", oauth.oauth_start, name="oauth_start"),
    # Compose and drafts
    path("compose/", compose.compose, name="compose"),
    path("compose/autosave/", compose.autosave, name="autosave"),
    path("drafts/", compose.draft_list, name="drafts"),
    path("drafts/<int:pk>/", compose.compose, name="draft"),
    path("drafts/<int:pk>/delete/", compose.draft_delete, name="draft_delete"),
    path("drafts/<int:pk>/attachments/", compose.upload_attachment, name="draft_upload"),
    # Outbox, history and messages
    path("outbox/", outbox.outbox, name="outbox"),
    path("outbox/live/", outbox.outbox_live, name="outbox_live"),
    path("messages/<int:pk>/", outbox.message_detail, name="message"),
    path("messages/<int:pk>/status/", outbox.message_status, name="message_status"),
    path("messages/<int:pk>/body.html", outbox.message_html, name="message_html"),
    path("messages/<int:pk>/download.eml", outbox.message_eml, name="message_eml"),
    path("messages/<int:pk>/reports/<int:report>.eml", outbox.message_report,
         name="message_report"),
    path("messages/<int:pk>/undo/", outbox.message_undo, name="message_undo"),
    path("messages/<int:pk>/cancel/", outbox.message_cancel, name="message_cancel"),
    path("messages/<int:pk>/retry/", outbox.message_retry, name="message_retry"),
    path("messages/<int:pk>/resend/", outbox.message_resend, name="message_resend"),
    path("messages/<int:pk>/edit/", outbox.message_edit, name="message_edit"),
]
