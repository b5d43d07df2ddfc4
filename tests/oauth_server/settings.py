"""Settings of the test authorization server (see the package docstring). Everything comes
from the environment ``tests/oauth.py`` sets for the process; nothing here is a secret
worth keeping: the key is generated per run and the database is a temporary file."""

import os

BASE_DIR = os.path.dirname(__file__)
SECRET_KEY = os.environ["OAUTH_TEST_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oauth2_provider",
]
MIDDLEWARE = [
    "tests.oauth_server.control.Misbehave",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.oauth_server.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(BASE_DIR, "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["OAUTH_TEST_DB"],
        "OPTIONS": {"timeout": 20},
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; test users only
USE_TZ = True
LOGIN_URL = "/accounts/login/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
OAUTH2_PROVIDER = {
    "PKCE_REQUIRED": True,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("OAUTH_TEST_ACCESS_SECONDS", "5")),
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": os.environ["OAUTH_TEST_RSA_KEY"],
    "OAUTH2_VALIDATOR_CLASS": "tests.oauth_server.validator.Validator",
    "SCOPES": {
        "openid": "Sign you in",
        "email": "See your email address",
        "mail": "Send mail as you",
        "offline_access": "Keep access while you are away",
        "introspection": "Check tokens (the test SMTP server)",
    },
    "DEFAULT_SCOPES": ["openid"],
}
LOGGING = {"version": 1, "disable_existing_loggers": True}
