"""Test settings: an isolated data dir per run, a file-backed SQLite test DB (so a real
Celery worker in another process sees it), or PostgreSQL + Redis when
``MAILROOM_TEST_DATABASE_URL`` / ``MAILROOM_TEST_BROKER_URL`` are set (the README's test
command sets them for the services pass)."""

import os
import tempfile

os.environ.setdefault("MAILROOM_DATA_DIR", tempfile.mkdtemp(prefix="mailroom-test-"))
if os.environ.get("MAILROOM_TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["MAILROOM_TEST_DATABASE_URL"]
if os.environ.get("MAILROOM_TEST_BROKER_URL"):
    os.environ["CELERY_BROKER_URL"] = os.environ["MAILROOM_TEST_BROKER_URL"]

from config.settings import *  # noqa: E402,F403
from config.settings import DATA_DIR, DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Several test runs may share this machine's PostgreSQL and Redis (developers running the
# suite side by side): give each run its own test database and its own Celery queue.
_RUN_ID = os.environ.setdefault("MAILROOM_TEST_RUN_ID", str(os.getpid()))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["TEST"] = {"NAME": f"test_mailroom_{_RUN_ID}"}
CELERY_TASK_DEFAULT_QUEUE = f"mailroom-test-{_RUN_ID}"
# ... and its own quota logs in a shared Redis (mailer.quotas keys them by account id).
MAILROOM_REDIS_PREFIX = f"mailroom-test-{_RUN_ID}"
