from unittest import mock

from kombu.exceptions import OperationalError

from mailer import tasks
from tests.mailer.base import send


def test_it_keeps_the_message_when_the_wake_up_cannot_be_sent(
    owner, account, django_capture_on_commit_callbacks, caplog
):
    # A mock, because the broker of this run cannot be taken down under the other tests'
    # feet; the real outage (a lost wake-up) is covered with a real worker in
    # test_it_pipeline_recovers_lost_wake_ups.py.
    with mock.patch.object(
        tasks.deliver, "apply_async", side_effect=OperationalError("Connection refused")
    ):
        with django_capture_on_commit_callbacks(execute=True):
            msg = send(owner, account)
    msg.refresh_from_db()
    assert msg.status == "queued"
    assert "the sweeper will send it" in caplog.text
