"""Settings for ``bench/faults.py`` (the harness, its Celery workers and beat): the normal
settings, plus the policy timings that are not read from the environment, shortened so
that throttled accounts retry within seconds. Everything else comes from the environment
the harness sets (short sweep, lease and backoff; its own Redis and PostgreSQL database)."""

import os

from config.settings import *  # noqa: F403

MAILROOM_THROTTLE_SECONDS = float(os.environ.get("MAILROOM_THROTTLE_SECONDS", "1"))
MAILROOM_THROTTLE_WINDOW_SECONDS = float(os.environ.get("MAILROOM_THROTTLE_WINDOW_SECONDS", "60"))
