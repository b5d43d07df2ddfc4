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
        [sys.executable, "-c", "import config.settings as s; print(len(s.MAILROOM_CREDENTIALS_KEYS))"],
        cwd=ROOT, env=clean, capture_output=True, text=True,
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
