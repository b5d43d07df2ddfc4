import pytest

from mailer import delivery
from tests.mailer.base import make_account, make_user
from tests.mailer.servers import ScriptedSink


@pytest.fixture
def owner(db):
    return make_user("owner")


@pytest.fixture
def second_user(db):
    return make_user("second")


@pytest.fixture
def stranger(db):
    return make_user("stranger")


@pytest.fixture
def server():
    with ScriptedSink() as srv:
        yield srv


@pytest.fixture
def account(owner, server):
    return make_account(owner, server)


@pytest.fixture(autouse=True)
def _fresh_connection_cache():
    # The per-process SMTP connection cache must not leak from one test into the next.
    yield
    delivery.connections.close_all()
