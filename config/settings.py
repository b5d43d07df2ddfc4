"""Mailroom settings, driven by the environment (and an optional ``.env``).

Two modes, chosen by ``MAILROOM_ENV``:

* ``development`` (the default, used by the README's one-command start): SQLite and the
  ``filesystem://`` broker under ``MAILROOM_DATA_DIR``; a secret key and a credentials key
  are generated into the data directory the first time.
* ``production``: ``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``MAILROOM_CREDENTIALS_KEYS`` must be
  set, or start-up stops with ``ImproperlyConfigured`` naming the variable; secure cookies,
  HSTS and SSL redirect are on.

Every variable is listed, with a comment, in ``.env.example``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_dotenv = BASE_DIR / ".env"
if _dotenv.is_file():
    environ.Env.read_env(str(_dotenv), overwrite=False)

MAILROOM_ENV = env.str("MAILROOM_ENV", default="development")
if MAILROOM_ENV not in ("development", "production"):
    raise ImproperlyConfigured(
        f"MAILROOM_ENV must be 'development' or 'production', not {MAILROOM_ENV!r}."
    )
PRODUCTION = MAILROOM_ENV == "production"

DATA_DIR = Path(env.str("MAILROOM_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
# Everything Mailroom writes is private to its own user: the SQLite database (and its
# journal), attachments and frozen .eml files, the broker's folders, the sink's mail, the
# generated keys. The umask covers what libraries create (sqlite3, kombu's filesystem
# transport, the sink); Django's uploads and storage saves get explicit modes below.
os.umask(0o077)
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
DATA_DIR.chmod(0o700)


def _generated_secret(name: str, make) -> str:
    """Read a development secret from the data dir, creating it (mode 0600) the first time."""
    path = DATA_DIR / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make())
    return path.read_text().strip()


def _required_in_production(var: str, make) -> str:
    value = env.str(var, default="")
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(
            f"{var} is not set. Production needs it: set it in the environment or in .env "
            f"(see .env.example for how to generate one)."
        )
    return _generated_secret(var.lower() + ".txt", make)


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _required_in_production("SECRET_KEY", lambda: secrets.token_urlsafe(50))


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# Comma-separated Fernet keys, newest first: the first encrypts, all decrypt (MultiFernet).
MAILROOM_CREDENTIALS_KEYS = [
    k.strip()
    for k in _required_in_production("MAILROOM_CREDENTIALS_KEYS", _fernet_key).split(",")
    if k.strip()
]

if PRODUCTION:
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
else:
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "mailer",
    "webui",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "webui.middleware.no_store",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'mailroom.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share one file: wait for locks instead of
    # failing at once, and take the write lock at BEGIN so a claim cannot deadlock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})
    if env.bool("DATABASE_POOL", default=False):
        DATABASES["default"]["OPTIONS"]["pool"] = True
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
# Dates and times as the history rows show them (2026-12-05 20:36): the English locale's
# "8:36 p.m." made a sentence ending in a time read "p.m..".
FORMAT_MODULE_PATH = ["config.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns at every request when it is missing
MEDIA_ROOT = DATA_DIR / "media"
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# With DEBUG off (the embedded default too), whitenoise serves the app's static files
# straight from the finders in development; production serves the collected, hashed ones.
WHITENOISE_USE_FINDERS = not PRODUCTION
STORAGES = {
    # Attachments and frozen .eml files: private, never served as static media.
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(DATA_DIR / "files")}},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Uploads: the whole request and each attachment (the account's/server's SIZE limit is
# checked separately, after base64, at compose time).
MAILROOM_MAX_ATTACHMENT_BYTES = env.int("MAILROOM_MAX_ATTACHMENT_BYTES", default=25 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=5 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Security. In production `manage.py check --deploy` is clean with the required variables
# set, PostgreSQL and Redis. What it can still say, and when that is expected:
# - security.W008 with SECURE_SSL_REDIRECT=false (TLS ends at a proxy that redirects);
# - mailer.W001/W002 when production runs on the filesystem broker or SQLite.
# security.W021 (HSTS preload off) is silenced: preloading is the operator's choice to make
# for the whole domain, hard to undo, so it stays opt-in (SECURE_HSTS_PRELOAD=true).
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

from csp.constants import NONE, SELF  # noqa: E402

# No inline script or style anywhere (the JS is webui/static/webui/app.js, htmx comes from
# django-htmx's static files); frames only for the message's own sandboxed HTML view, which
# sets a stricter policy of its own (webui.views.outbox.message_html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "frame-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=env.str("REDIS_URL", default="filesystem://"))
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for sub in ("out", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu's broadcast/pidbox exchange files; the default is ./control in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # kombu polls the folder; its default of 1 s between polls limits each worker
        # process to about one message a second on the embedded default.
        "polling_interval": 0.1,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
MAILROOM_SWEEP_SECONDS = env.float("MAILROOM_SWEEP_SECONDS", default=30.0)
MAILROOM_RELEASE_SECONDS = env.float("MAILROOM_RELEASE_SECONDS", default=2.0)
MAILROOM_COUNTS_COMPACT_SECONDS = env.float("MAILROOM_COUNTS_COMPACT_SECONDS", default=30.0)
# The most rows one sweep (or hold release) makes due and enqueues; the rest wait for the next.
MAILROOM_SWEEP_BATCH = env.int("MAILROOM_SWEEP_BATCH", default=1000)

# Redis for cross-worker counters (rate limits, quotas); empty = use the database.
MAILROOM_REDIS_URL = env.str(
    "MAILROOM_REDIS_URL",
    default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "",
)
# Prefix of Mailroom's keys there (several instances may share one Redis).
MAILROOM_REDIS_PREFIX = env.str("MAILROOM_REDIS_PREFIX", default="mailroom")

# --- Delivery policy ------------------------------------------------------------------
# Where outgoing SMTP connections may go, checked on every address after DNS resolution
# (mailer.destinations): networks (CIDR) to deny, or "internal" (loopback, private,
# link-local and metadata, shared and reserved ranges); networks allowed even so (an
# internal relay); whether staff users are exempt. Production denies the internal ranges by
# default; the embedded default, whose Local sink is on 127.0.0.1, denies nothing.
MAILROOM_DESTINATIONS_DENY = env.list(
    "MAILROOM_DESTINATIONS_DENY", default=["internal"] if PRODUCTION else []
)
MAILROOM_DESTINATIONS_ALLOW = env.list("MAILROOM_DESTINATIONS_ALLOW", default=[])
MAILROOM_DESTINATIONS_STAFF_EXEMPT = env.bool("MAILROOM_DESTINATIONS_STAFF_EXEMPT", default=True)
# Recipients only in these domains (and their subdomains), comma-separated; empty, the
# default, allows every syntactically valid address (the server decides what exists).
MAILROOM_ALLOWED_RECIPIENT_DOMAINS = [
    d.strip().lower().lstrip("@").rstrip(".")
    for d in env.list("MAILROOM_ALLOWED_RECIPIENT_DOMAINS", default=[])
    if d.strip()
]
MAILROOM_MAX_MESSAGE_AGE_SECONDS = env.int("MAILROOM_MAX_MESSAGE_AGE_SECONDS", default=5 * 86400)
MAILROOM_MIN_BACKOFF_SECONDS = env.int("MAILROOM_MIN_BACKOFF_SECONDS", default=300)
MAILROOM_MAX_BACKOFF_SECONDS = env.int("MAILROOM_MAX_BACKOFF_SECONDS", default=4000)
MAILROOM_LEASE_SECONDS = env.int("MAILROOM_LEASE_SECONDS", default=300)
MAILROOM_CONNECTION_IDLE_SECONDS = env.float("MAILROOM_CONNECTION_IDLE_SECONDS", default=30.0)
# A cached connection idle for longer than this is checked with NOOP before reuse.
MAILROOM_NOOP_AFTER_SECONDS = env.float("MAILROOM_NOOP_AFTER_SECONDS", default=2.0)
# One wake-up drains its account's due mail: claimed this many at a time, for at most
# this long before the task ends (mailer.delivery.drain).
MAILROOM_CLAIM_BATCH = env.int("MAILROOM_CLAIM_BATCH", default=20)
MAILROOM_DRAIN_SECONDS = env.float("MAILROOM_DRAIN_SECONDS", default=30.0)
# A woken worker waits this long before its first claim, so that mail sent meanwhile goes
# out in the same batch instead of each message costing a wake-up of its own.
MAILROOM_DRAIN_GATHER_SECONDS = env.float("MAILROOM_DRAIN_GATHER_SECONDS", default=0.1)
MAILROOM_DEFAULT_HOLD_SECONDS = env.int("MAILROOM_DEFAULT_HOLD_SECONDS", default=10)
MAILROOM_RETRY_UNKNOWN = env.bool("MAILROOM_RETRY_UNKNOWN", default=False)
# SMTP timeouts in seconds: opening the connection, each command's reply, the whole data
# transfer. A read timeout means the connection is dead (the reply stream is out of step).
MAILROOM_SMTP_CONNECT_TIMEOUT = env.float("MAILROOM_SMTP_CONNECT_TIMEOUT", default=30.0)
MAILROOM_SMTP_COMMAND_TIMEOUT = env.float("MAILROOM_SMTP_COMMAND_TIMEOUT", default=60.0)
MAILROOM_SMTP_DATA_TIMEOUT = env.float("MAILROOM_SMTP_DATA_TIMEOUT", default=600.0)
# "Test connection": one deadline for the whole check (connect, greeting, TLS, login), in
# seconds, and how many checks and test messages one user may start per minute.
MAILROOM_CHECK_DEADLINE_SECONDS = env.float("MAILROOM_CHECK_DEADLINE_SECONDS", default=30.0)
# IMAP (the copy in the Sent folder): the deadline of each read, and how often a copy that
# could not be saved is tried again (backoff from one minute, doubling, at most an hour)
# before it is given up as "not saved".
MAILROOM_IMAP_TIMEOUT = env.float("MAILROOM_IMAP_TIMEOUT", default=30.0)
MAILROOM_SENT_COPY_ATTEMPTS = env.int("MAILROOM_SENT_COPY_ATTEMPTS", default=8)
# Delivery reports (mailer.imap.bounces): how often each account's INBOX and junk folder are
# read, in seconds, and the largest report that is read (a larger one is skipped, said so).
MAILROOM_REPORT_POLL_SECONDS = env.float("MAILROOM_REPORT_POLL_SECONDS", default=300.0)
MAILROOM_REPORT_MAX_BYTES = env.int("MAILROOM_REPORT_MAX_BYTES", default=10_000_000)
MAILROOM_CHECKS_PER_MINUTE = env.int("MAILROOM_CHECKS_PER_MINUTE", default=5)
# A provider that says "slow down" (4.7.x, 421, 454): the first spacing of the account's
# attempts, doubled at each further throttle within the window (mailer.policy).
MAILROOM_THROTTLE_SECONDS = env.int("MAILROOM_THROTTLE_SECONDS", default=60)
MAILROOM_THROTTLE_WINDOW_SECONDS = env.int("MAILROOM_THROTTLE_WINDOW_SECONDS", default=3600)

# "Sign in with …" (mailer.oauth.providers): the apps registered at Google and Microsoft
# (README, "Sign in with Google or Microsoft"), and any OpenID Connect provider by issuer.
# With no client id set, the option does not appear.
MAILROOM_OAUTH_GOOGLE_CLIENT_ID = env.str("MAILROOM_OAUTH_GOOGLE_CLIENT_ID", default="")
MAILROOM_OAUTH_GOOGLE_CLIENT_SECRET = env.str("MAILROOM_OAUTH_GOOGLE_CLIENT_SECRET", default="")
MAILROOM_OAUTH_MICROSOFT_CLIENT_ID = env.str("MAILROOM_OAUTH_MICROSOFT_CLIENT_ID", default="")
MAILROOM_OAUTH_MICROSOFT_CLIENT_SECRET = env.str(
    "MAILROOM_OAUTH_MICROSOFT_CLIENT_SECRET", default=""
)
MAILROOM_OAUTH_MICROSOFT_TENANT = env.str("MAILROOM_OAUTH_MICROSOFT_TENANT", default="common")
MAILROOM_OAUTH_PROVIDERS = [n.strip() for n in env.list("MAILROOM_OAUTH_PROVIDERS", default=[])]
MAILROOM_OAUTH_GENERIC = {
    name: {
        field: os.environ[f"MAILROOM_OAUTH_{name.upper()}_{field}"]
        for field in ("ISSUER", "CLIENT_ID", "CLIENT_SECRET", "LABEL", "SCOPES", "SMTP_HOST",
                      "SMTP_PORT", "SMTP_SECURITY")
        if f"MAILROOM_OAUTH_{name.upper()}_{field}" in os.environ
    }
    for name in MAILROOM_OAUTH_PROVIDERS
}
# One request to a provider (token, discovery, keys) ends within this many seconds; an
# access token is refreshed when it has less than MAILROOM_OAUTH_REFRESH_MARGIN_SECONDS
# left; a worker refreshing an account holds its lease for MAILROOM_OAUTH_LEASE_SECONDS at
# most (longer than a request can take, so no two workers ever use one refresh token).
MAILROOM_OAUTH_HTTP_TIMEOUT = env.float("MAILROOM_OAUTH_HTTP_TIMEOUT", default=10.0)
MAILROOM_OAUTH_REFRESH_MARGIN_SECONDS = env.float(
    "MAILROOM_OAUTH_REFRESH_MARGIN_SECONDS", default=120.0
)
MAILROOM_OAUTH_LEASE_SECONDS = env.float("MAILROOM_OAUTH_LEASE_SECONDS", default=30.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
