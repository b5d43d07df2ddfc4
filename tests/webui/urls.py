"""Every object URL of the web UI, for the access-control tests."""


def object_get_urls(account, draft, message) -> list[str]:
    return [
        f"/accounts/{account.pk}/",
        f"/accounts/{account.pk}/edit/",
        f"/drafts/{draft.pk}/",
        f"/messages/{message.pk}/",
        f"/messages/{message.pk}/status/",
        f"/messages/{message.pk}/body.html",
        f"/messages/{message.pk}/download.eml",
    ]


def post_only_urls(account, draft, message) -> list[str]:
    a, d, m = account.pk, draft.pk, message.pk
    return [
        "/logout/", "/compose/autosave/",
        f"/accounts/{a}/delete/", f"/accounts/{a}/default/", f"/accounts/{a}/check/",
        f"/accounts/{a}/resume/", f"/accounts/{a}/test-message/",
        f"/drafts/{d}/delete/", f"/drafts/{d}/attachments/",
        f"/messages/{m}/undo/", f"/messages/{m}/cancel/", f"/messages/{m}/retry/",
        f"/messages/{m}/resend/", f"/messages/{m}/edit/",
    ]


def object_post_urls(account, draft, message) -> list[str]:
    """POST URLs that name an object (all but logout and autosave), plus the forms."""
    return [
        u
        for u in post_only_urls(account, draft, message)
        if u not in ("/logout/", "/compose/autosave/")
    ] + [f"/accounts/{account.pk}/edit/", f"/drafts/{draft.pk}/"]
