"""The production shape that cannot run here (no Docker engine): docker-compose.yml parses
and is wired as documented, the Dockerfile copies what exists, `.env.example` lists every
variable settings.py reads, and settings load in production with the compose environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("migrate", "web", "worker", "beat")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, flags=re.M))


def test_every_variable_settings_reads_is_in_env_example():
    source = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    read |= set(re.findall(r"_required_in_production\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    assert {"DATABASE_URL", "SECRET_KEY", "MAILROOM_CREDENTIALS_KEYS"} <= read  # the regexes work
    missing = read - _example_names()
    assert not missing, f"add these to .env.example, with a comment: {sorted(missing)}"


def test_every_variable_compose_interpolates_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    # ${VAR...} is compose interpolation; $${VAR...} is escaped for the container's shell.
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    used |= set(re.findall(r"\$\$\{([A-Z][A-Z0-9_]*)", text))
    assert "POSTGRES_PASSWORD" in used
    assert not used - _example_names()


def test_compose_runs_the_production_shape():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"db", "redis", *APP_SERVICES}
    for name in APP_SERVICES:
        svc = services[name]
        assert svc["env_file"] == ".env"
        assert svc["environment"]["MAILROOM_ENV"] == "production"
        assert svc["environment"]["DATABASE_URL"].startswith("postgres://")
        assert svc["environment"]["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert "mailroom-data:/data" in svc["volumes"]  # web writes files, workers read them
    assert "gunicorn config.wsgi:application" in " ".join(services["web"]["command"])
    assert "celery -A config worker" in " ".join(services["worker"]["command"])
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for name in ("db", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("web", "worker", "beat"):
        deps = services[name]["depends_on"]
        assert deps["db"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["web"]["ports"][0].startswith("127.0.0.1:")
    assert set(compose["volumes"]) == {"mailroom-data", "postgres-data", "redis-data"}


def test_the_web_healthcheck_script_is_valid_python():
    script = _compose()["services"]["web"]["healthcheck"]["test"][3]
    compile(script, "healthcheck", "exec")


def test_the_dockerfile_copies_what_exists():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M)
    paths = [p for line in copied for p in line.split()]
    assert "mailer" in paths and "config" in paths and "webui" in paths
    for path in paths:
        assert (ROOT / path).exists(), path
    assert "USER mailroom" in dockerfile


def test_settings_load_in_production_with_the_compose_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "DJANGO_"))}
    env.update(
        {
            k: v.replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}", "pw")
            for k, v in _compose()["services"]["worker"]["environment"].items()
        }
    )
    env.update(
        MAILROOM_DATA_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="x" * 50,
        MAILROOM_CREDENTIALS_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="mail.example.com",
    )
    code = (
        "import django; django.setup();"
        "from django.conf import settings; from mailer.checks import production_services;"
        "print(settings.DATABASES['default']['ENGINE'], settings.CELERY_BROKER_URL,"
        " settings.MAILROOM_REDIS_URL, len(production_services()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "django.db.backends.postgresql",
        "redis://redis:6379/0",
        "redis://redis:6379/1",
        "0",
    ]


def test_check_deploy_is_clean_in_production(tmp_path):
    """``manage.py check --deploy`` with the required variables, PostgreSQL and Redis set
    reports no issue at all (config/settings.py says which ones are expected otherwise)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "DJANGO_"))}
    env.update(
        MAILROOM_ENV="production",
        MAILROOM_DATA_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="k" * 20 + "-long-and-random-enough-for-the-check-0123456789",
        MAILROOM_CREDENTIALS_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="mail.example.com",
        DATABASE_URL="postgres://mailroom:pw@db:5432/mailroom",
        CELERY_BROKER_URL="redis://redis:6379/0",
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "System check identified no issues" in out.stdout, out.stdout + out.stderr
