from mailer import delivery, services
from tests.mailer.base import send


def test_it_copies_fields_and_attachments_into_a_new_draft(owner, account, server):
    msg = send(owner, account, to="a@example.org", bcc="b@example.org", subject="Again",
               attachments=[("x.bin", "application/octet-stream", b"\x00\x01payload")])
    delivery.deliver(msg.pk)
    draft = services.edit_as_new_draft(owner, msg)
    assert (draft.to, draft.bcc, draft.subject, draft.account) == (
        "a@example.org",
        "b@example.org",
        "Again",
        account,
    )
    [copy] = draft.attachments.all()
    [orig] = msg.attachments.all()
    assert copy.file.name != orig.file.name and copy.file.read() == b"\x00\x01payload"
    assert copy.sha256 == orig.sha256
    msg.refresh_from_db()
    assert msg.status == "sent"  # the history stays as it was
