import pytest

from mailer import services
from tests.mailer.base import make_draft, send


@pytest.mark.parametrize("action", [
    lambda u, m, a: services.undo_send(u, m),
    lambda u, m, a: services.cancel(u, m),
    lambda u, m, a: services.retry_now(u, m),
    lambda u, m, a: services.resend_unknown(u, m),
    lambda u, m, a: services.edit_as_new_draft(u, m),
    lambda u, m, a: services.check_account(u, a),
    lambda u, m, a: services.send_test_message(u, a),
    lambda u, m, a: services.resume_account(u, a),
    lambda u, m, a: services.start_check(u, a),
    lambda u, m, a: services.latest_check(u, a),
    lambda u, m, a: services.set_default(u, a),
    lambda u, m, a: services.delete_account(u, a),
])
def test_it_hides_other_peoples_objects(owner, stranger, account, action):
    msg = send(owner, account, hold_seconds=10)
    with pytest.raises(services.NotFound):
        action(stranger, msg, account)
    msg.refresh_from_db()
    assert msg.status == "scheduled"


def test_it_refuses_to_send_another_users_draft_or_from_their_account(owner, second_user, account):
    with pytest.raises(services.NotFound):
        services.send_draft(second_user, make_draft(owner, account))
    theirs = make_draft(second_user, account)  # a draft pointing at someone else's account
    with pytest.raises(services.ValidationError) as err:
        services.send_draft(second_user, theirs)
    assert "account" in err.value.message_dict
