"""Settings start safely: production refuses to start without its secrets, with a message
that names the variable; development generates them into the data dir."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _import_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "DJANGO_"))}
    clean.pop("SECRET_KEY", None)
    clean.pop("DATABASE_URL", None)
    clean.update({"MAILROOM_DATA_DIR": str(tmp_path), **env})
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import config.settings as s; print(len(s.MAILROOM_CREDENTIALS_KEYS))",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
    )


def test_it_refuses_production_without_credentials_key(tmp_path):
    r = _import_settings(tmp_path, MAILROOM_ENV="production", SECRET_KEY="x" * 50,
                         ALLOWED_HOSTS="mail.example.com")
    assert r.returncode != 0
    assert "MAILROOM_CREDENTIALS_KEYS is not set" in r.stderr


def test_it_generates_development_keys_into_the_data_dir(tmp_path):
    r = _import_settings(tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    key_file = tmp_path / "mailroom_credentials_keys.txt"
    assert key_file.exists() and oct(key_file.stat().st_mode)[-3:] == "600"
    # A second start reads the same key rather than making a new one.
    before = key_file.read_text()
    assert _import_settings(tmp_path).returncode == 0
    assert key_file.read_text() == before


def test_it_lets_stale_periodic_sweeps_expire():
    # While no worker runs, beat keeps publishing; an unexpiring sweep would pile up and
    # flood the queue with wake-ups when workers return (found by bench/faults.py).
    from config.celery import app

    app.loader.import_default_modules()
    app.finalize()
    schedule = app.conf.beat_schedule
    assert schedule["mailroom-sweep"]["options"]["expires"] > 0
    for entry in schedule.values():
        assert 0 < entry["options"]["expires"] <= entry["schedule"]


def test_it_defines_every_setting_once_with_its_default():
    """Every ``MAILROOM_*`` name the code reads is defined in config/settings.py (with its
    default, the one place) and listed in .env.example; no code repeats a default with
    ``getattr(settings, NAME, default)``."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sources = [p for d in ("mailer", "webui", "config") for p in (root / d).rglob("*.py")
               if "migrations" not in p.parts]
    used = set()
    for path in sources:
        text = path.read_text()
        used |= set(re.findall(r"\bMAILROOM_[A-Z0-9_]+\b", text))
        repeated = re.findall(r"getattr\(\s*settings\s*,\s*[\"']\w+[\"']\s*,", text)
        assert not repeated, f"{path}: a default repeated outside config/settings.py: {repeated}"
    settings_py = (root / "config" / "settings.py").read_text()
    env_example = (root / ".env.example").read_text()
    defined = set(re.findall(r"^(MAILROOM_[A-Z0-9_]+) = ", settings_py, re.M))
    read = set(re.findall(r"env\.\w+\(\s*\"(MAILROOM_[A-Z0-9_]+)\"", settings_py))
    # A name ending in "_" is the prefix of a family (MAILROOM_OAUTH_<NAME>_ISSUER …), read
    # by settings.py under names it builds; .env.example must still describe the family.
    missing = sorted(n for n in used if n not in defined and n not in read and n[-1] != "_")
    assert not missing, f"read in the code but not defined in config/settings.py: {missing}"
    unlisted = sorted(n for n in used if n not in env_example)
    assert not unlisted, f"not listed in .env.example: {unlisted}"
