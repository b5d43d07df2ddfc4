# Mailroom's production image: one image for web (gunicorn), worker and beat
# (docker-compose.yml picks the command). Configuration comes from the environment.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MAILROOM_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY config ./config
COPY mailer ./mailer
COPY webui ./webui
# Editable: the code (templates and static files included) is imported from /app itself,
# whichever way a process starts (manage.py, gunicorn, celery).
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mailroom \
    && mkdir -p /data \
    && chown mailroom:mailroom /data

USER mailroom
VOLUME ["/data"]
EXPOSE 8000

# Static files are collected at start (STATIC_ROOT lives in the data volume, and the
# manifest must be built with the production settings).
CMD ["sh", "-c", "python manage.py collectstatic --noinput -v0 && exec gunicorn config.wsgi:application --bind 0.0.0.0:8000 --access-logfile -"]
