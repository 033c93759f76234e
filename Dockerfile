# One image for every portal process: web (gunicorn), Celery worker, beat and
# the one-shot migrate job; docker-compose.yml picks the command.
FROM python:3.11-slim

# PYTHONPATH: the source tree in /app wins over the installed copy, so
# templates and other non-Python files resolve relative to /app in every
# process. PORTAL_REQUIRE_SECRET_KEY=true: refuse to start without a real
# SECRET_KEY, FIELD_ENCRYPTION_KEYS, AUDIT_CHAIN_KEYS and PORTAL_INSTANCE_ID instead of generating local ones.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=portal.settings \
    STATIC_ROOT=/app/staticfiles \
    PORTAL_VAR_DIR=/app/var \
    PORTAL_REQUIRE_SECRET_KEY=true

WORKDIR /app

RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin portal

COPY . .
RUN pip install -c constraints.txt . \
    && rm -rf build ./*.egg-info

# Settings refuse to load without keys and an instance id in the image;
# collectstatic needs none, so throwaway ones are given to this command only.
RUN SECRET_KEY=collectstatic-only PORTAL_INSTANCE_ID=collectstatic \
    AUDIT_CHAIN_KEYS=collectstatic-only:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    FIELD_ENCRYPTION_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    python manage.py collectstatic --noinput \
    && mkdir -p /app/var \
    && chown portal:portal /app/var

USER portal

EXPOSE 8000
CMD ["gunicorn", "portal.wsgi:application", "-b", "0.0.0.0:8000"]
