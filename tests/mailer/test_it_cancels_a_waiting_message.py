from datetime import timedelta

import pytest
from django.utils import timezone

from mailer import delivery, services
from tests.mailer.base import send


def test_it_cancels_a_scheduled_message_so_it_is_never_sent(owner, account, server):
    msg = send(owner, account, send_at=timezone.now() + timedelta(hours=1))
    assert services.cancel(owner, msg).status == "cancelled"
    assert delivery.deliver(msg.pk) is None and server.received == []


def test_it_refuses_to_cancel_a_message_being_sent_or_sent(owner, account, server):
    msg = send(owner, account)
    delivery.claim(msg.pk)
    with pytest.raises(services.ActionNotAllowed, match="handing it to the server"):
        services.cancel(owner, msg)
    msg2 = send(owner, account)
    delivery.deliver(msg2.pk)
    with pytest.raises(services.ActionNotAllowed, match="sent"):
        services.cancel(owner, msg2)
