"""Settings for the DMS Access Portal.

Everything that differs between a laptop, CI and production comes from the
environment. The defaults are the embedded quickstart: SQLite, a broker that
needs no server, and no real AWS.
"""
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from provisioning.ownership import INSTANCE_ID_PATTERN, INSTANCE_ID_RULE, LEGACY_INSTANCE_ID

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)


def _kept_in_var(name: str, make) -> str:
    """A value made once and kept in VAR_DIR/<name> (mode 0600), for the embedded
    default and tests only: deployments give every such value in the environment
    (PORTAL_REQUIRE_SECRET_KEY makes that compulsory)."""
    path = VAR_DIR / name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        value = make()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this installation made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(value)
    return path.read_text().strip()


def _local_secret_key() -> str:
    import secrets

    return _kept_in_var("secret_key", lambda: secrets.token_urlsafe(50))


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    # Deployments set PORTAL_REQUIRE_SECRET_KEY (the Docker image does), so a
    # forgotten SECRET_KEY stops the process instead of inventing a key.
    if env_bool("PORTAL_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("SECRET_KEY must be set")
    SECRET_KEY = _local_secret_key()


def _local_field_encryption_key() -> str:
    import base64

    return _kept_in_var("field_encryption_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode())


# Fernet keys for the values kept encrypted in the database (the accounts'
# external ids). Comma-separated: the first encrypts, all decrypt (rotation:
# put a new key first, run `manage.py rotate_field_encryption`, drop the old).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS:
    if env_bool("PORTAL_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set")
    FIELD_ENCRYPTION_KEYS = [_local_field_encryption_key()]


def _local_instance_id() -> str:
    """A new VAR_DIR gets a random id. One that already holds a quickstart
    database from before instance ids existed gets ``legacy``, so the roles,
    endpoints and statements it made stay its own (see provisioning.ownership)."""
    import secrets

    made_before = (VAR_DIR / "portal.sqlite3").exists()
    return _kept_in_var("instance_id", lambda: LEGACY_INSTANCE_ID if made_before else secrets.token_hex(6))


# Which deployment of the portal this is: it goes into every owner tag and
# statement Sid, so a second portal (staging, a restored backup) sharing an
# account never takes this one's request #N for its own. Required where
# SECRET_KEY is; see provisioning.ownership for its syntax and ``legacy``.
PORTAL_INSTANCE_ID = os.environ.get("PORTAL_INSTANCE_ID", "").strip()
if not PORTAL_INSTANCE_ID:
    if env_bool("PORTAL_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("PORTAL_INSTANCE_ID must be set")
    PORTAL_INSTANCE_ID = _local_instance_id()
if not INSTANCE_ID_PATTERN.fullmatch(PORTAL_INSTANCE_ID):
    raise ImproperlyConfigured(f"PORTAL_INSTANCE_ID {INSTANCE_ID_RULE} (got {PORTAL_INSTANCE_ID!r})")


def _audit_chain_keys(value: str) -> list[tuple[str, bytes]]:
    """``id:base64key,id:base64key``: the first signs new audit events, all verify."""
    import base64
    import binascii
    import re

    keys = []
    for entry in (item.strip() for item in value.split(",") if item.strip()):
        key_id, _, encoded = entry.partition(":")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", key_id) or key_id == "sha256-legacy":
            raise ImproperlyConfigured(f"AUDIT_CHAIN_KEYS: bad key id {key_id!r} (letters, digits, . _ -; at most 32)")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ImproperlyConfigured(f"AUDIT_CHAIN_KEYS: key {key_id!r} is not base64") from None
        if len(key) < 32:
            raise ImproperlyConfigured(f"AUDIT_CHAIN_KEYS: key {key_id!r} is shorter than 32 bytes")
        if key_id in dict(keys):
            raise ImproperlyConfigured(f"AUDIT_CHAIN_KEYS: key id {key_id!r} appears twice")
        keys.append((key_id, key))
    return keys


def _local_audit_chain_keys() -> str:
    import base64
    import secrets
    import time

    return _kept_in_var(
        "audit_chain_keys", lambda: f"local-{int(time.time())}:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    )


# The key of the audit trail's HMAC chain (requests_app/audit.py) and of its
# checkpoints. Like SECRET_KEY, deployments must set it.
_audit_keys_value = os.environ.get("AUDIT_CHAIN_KEYS", "")
if not _audit_keys_value:
    if env_bool("PORTAL_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("AUDIT_CHAIN_KEYS must be set")
    _audit_keys_value = _local_audit_chain_keys()
AUDIT_CHAIN_KEYS = _audit_chain_keys(_audit_keys_value)
if not AUDIT_CHAIN_KEYS:
    raise ImproperlyConfigured("AUDIT_CHAIN_KEYS holds no key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # API tokens: hashed, named, expiring (requests_app.ApiToken). DRF's
    # authtoken (keys in clear, never expiring) is gone; migration
    # requests_app 0005_tokens drops its table.
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "requests_app",
]

MIDDLEWARE = [
    # First, so every response gets their headers, also the redirects to
    # HTTPS and the static files WhiteNoise answers without going further.
    "portal.security.ContentSecurityPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The portal serves its own CSS and JavaScript (closed networks, no CDN).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Last: answers 429 to a login refused because of a lockout.
    "axes.middleware.AxesMiddleware",
]

# --- Security headers and HTTPS ------------------------------------------------
# Every response: Content-Security-Policy (portal/security.py), and from
# Django X-Frame-Options, X-Content-Type-Options, Referrer-Policy and
# Cross-Origin-Opener-Policy. The pages load only the portal's own scripts
# and styles, never inline ones; Swagger UI's icons are data: images.
CONTENT_SECURITY_POLICY = os.environ.get(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# PORTAL_HTTPS: the portal is reached over HTTPS (terminated by the portal or
# by a proxy in front of it). Then plain HTTP is redirected, cookies travel
# only over HTTPS and browsers are told to insist on HTTPS (HSTS).
PORTAL_HTTPS = env_bool("PORTAL_HTTPS", False)
if PORTAL_HTTPS:
    SECURE_SSL_REDIRECT = True
    # Health checks and metrics are scraped over plain HTTP inside the network
    # (the container healthcheck calls http://127.0.0.1:8000/healthz).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Only a request at hstspreload.org puts a domain on the browsers' list;
    # the header itself just allows it.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# PORTAL_BEHIND_TLS_PROXY: a proxy terminates TLS and says so in
# X-Forwarded-Proto; set only when the proxy always sets (or strips) it.
if env_bool("PORTAL_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers queue behind one another instead of failing with "database is
    # locked" halfway through a transaction (web and worker share the file).
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 30})
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# The owner of the tables, for `manage.py migrate` only (see
# requests_app/management/commands/migrate.py); the running portal connects
# with DATABASE_URL as a role that may not alter, empty or rewrite the audit
# trail. Unset: migrations run with DATABASE_URL (SQLite, the quickstart).
MIGRATION_DATABASE_URL = os.environ.get("MIGRATION_DATABASE_URL", "")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# --- Login lockout (django-axes) -----------------------------------------------
# Every login (the portal's page, Django admin, the single sign-on callback)
# goes through AxesStandaloneBackend first: after AXES_FAILURE_LIMIT failures
# within the cool-off, that user name, and separately that address, is refused
# (429) until the cool-off passes or an administrator lifts it (audited:
# admin's "Access attempts", or manage.py unlock_login). A success does not
# wipe the count, or anyone with an account could reset an address's count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = "requests_app.login_lockout.lockout_parameters"
AXES_RESET_ON_SUCCESS = False
# The admin shows attempts through requests_app.admin, whose only action is the audited unlock.
AXES_ENABLE_ADMIN = False
AXES_DISABLE_ACCESS_LOG = True
AXES_CLIENT_IP_CALLABLE = "requests_app.login_lockout.client_ip"
# Proxies in front of the portal that append to X-Forwarded-For (0: reached directly).
PORTAL_PROXY_COUNT = int(os.environ.get("PORTAL_PROXY_COUNT", "0"))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# Also serve straight from the apps' static folders, so the embedded quickstart
# and the tests need no collectstatic; the image still collects them.
WHITENOISE_USE_FINDERS = True

# --- Celery -----------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu's default is "control" relative to the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # The worker looks for new messages this often (kombu's default is 1 s,
        # which would add a second between each step of a grant).
        "polling_interval": 0.2,
        # This transport deletes a message as the worker takes it (there is
        # no visibility timeout): a killed worker's messages die with it, and
        # the sweep re-sends their work once the step's lease lapses or the
        # request stalls, as with Redis.
    }
    # kombu never creates these, and the first process to touch the broker
    # (web, worker or beat, in any order) must find them.
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A message a worker took and never acknowledged (it was killed) goes back
    # to the queue after this long, not after kombu's default hour. The sweep
    # (below) re-sends lost work much sooner; this is the backstop. Longer than
    # the longest retry countdown, so a delayed retry is not handed out twice;
    # a task still running when it comes back finds its step leased and does
    # nothing.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT_SECONDS", "300")),
    }

# --- Provisioning workflow ----------------------------------------------------
# Retryable AWS errors (IAM propagation, throttling, 5xx) are retried with
# exponential backoff and full jitter: countdowns are drawn from
# [0, min(BACKOFF_MAX, BACKOFF * 2**n)], so the defaults wait about 105 s in
# all on average and at most 210 s, matching the ~2 minutes IAM needs.
PROVISIONING_RETRY_BACKOFF = int(os.environ.get("PROVISIONING_RETRY_BACKOFF", "2"))
PROVISIONING_RETRY_BACKOFF_MAX = int(os.environ.get("PROVISIONING_RETRY_BACKOFF_MAX", "30"))
PROVISIONING_RETRY_MAX_RETRIES = int(os.environ.get("PROVISIONING_RETRY_MAX_RETRIES", "10"))
# A step's claim is a lease in the database that the worker running it renews
# every PROVISIONING_STEP_HEARTBEAT_SECONDS while the step runs (however long
# AWS takes, e.g. two minutes of IAM retries or a five-minute connection
# test), so only a claim whose worker died, hangs or lost the database lapses.
# A lapsed claim is taken over by the next task for the request; the worker
# that lost it writes nothing more to AWS (it checks its lease right before
# each write) and its result is refused. Short, so a killed worker's steps
# resume within seconds; several heartbeats long, so a slow database round
# trip does not lose a live worker its step.
PROVISIONING_STEP_LEASE_SECONDS = int(os.environ.get("PROVISIONING_STEP_LEASE_SECONDS", "30"))
PROVISIONING_STEP_HEARTBEAT_SECONDS = float(
    os.environ.get("PROVISIONING_STEP_HEARTBEAT_SECONDS", PROVISIONING_STEP_LEASE_SECONDS / 6)
)
# A write to AWS starts only while the lease has at least this much left.
PROVISIONING_STEP_WRITE_MARGIN_SECONDS = float(
    os.environ.get("PROVISIONING_STEP_WRITE_MARGIN_SECONDS", PROVISIONING_STEP_LEASE_SECONDS / 3)
)
# A request in flight with no step running and no activity for this long has
# lost its queued task (broker down at approval, a worker killed while it held
# the message or a delayed retry): the sweeper enqueues it again. A third of a
# lease longer than the longest retry backoff (a step waiting for its retry is
# quiet that long) or than a lease, whichever is longer.
PROVISIONING_STALL_SECONDS = int(
    os.environ.get(
        "PROVISIONING_STALL_SECONDS",
        max(PROVISIONING_STEP_LEASE_SECONDS, PROVISIONING_RETRY_BACKOFF_MAX) + PROVISIONING_STEP_LEASE_SECONDS / 3,
    )
)
# The sweep looks for lapsed leases and lost work this often: a third of a
# lease, so a dead worker's step is re-sent at most a lease and a third after
# its last heartbeat.
PROVISIONING_SWEEP_INTERVAL_SECONDS = float(
    os.environ.get("PROVISIONING_SWEEP_INTERVAL_SECONDS", PROVISIONING_STEP_LEASE_SECONDS / 3)
)
# Each worker also runs that sweep itself (beside beat), so a dead beat does not
# leave a dead worker's steps stranded.
PROVISIONING_WORKER_SWEEP = env_bool("PROVISIONING_WORKER_SWEEP", True)
# --- Grant lifecycle ----------------------------------------------------------
# Active grants past expires_at are revoked by the sweep above (every
# PROVISIONING_SWEEP_INTERVAL_SECONDS). The requester is reminded this long before a grant expires (once per expiry).
EXPIRY_REMINDER_BEFORE = timedelta(hours=float(os.environ.get("EXPIRY_REMINDER_BEFORE_HOURS", "72")))
EXPIRY_REMINDER_INTERVAL_SECONDS = float(os.environ.get("EXPIRY_REMINDER_INTERVAL_SECONDS", "900"))
# Requests pending approval are reminded, escalated and expired (each
# account's rules) by a sweep this often.
PENDING_APPROVAL_SWEEP_INTERVAL_SECONDS = float(os.environ.get("PENDING_APPROVAL_SWEEP_INTERVAL_SECONDS", "600"))
# Every active grant is compared with AWS this often (about six read calls each).
DRIFT_CHECK_INTERVAL_SECONDS = float(os.environ.get("DRIFT_CHECK_INTERVAL_SECONDS", "3600"))

# The audit trail is verified from where the last run stopped, and a signed
# checkpoint of it written to the log (and to AUDIT_CHECKPOINT_BUCKET, an S3
# bucket with Object Lock, when set), this often.
AUDIT_CHECKPOINT_INTERVAL_SECONDS = float(os.environ.get("AUDIT_CHECKPOINT_INTERVAL_SECONDS", "900"))
AUDIT_CHECKPOINT_BUCKET = os.environ.get("AUDIT_CHECKPOINT_BUCKET", "")
AUDIT_CHECKPOINT_PREFIX = os.environ.get("AUDIT_CHECKPOINT_PREFIX", "audit-checkpoints/")
# How long S3 keeps each checkpoint object locked (compliance mode).
AUDIT_CHECKPOINT_RETENTION_DAYS = int(os.environ.get("AUDIT_CHECKPOINT_RETENTION_DAYS", "400"))

CELERY_BEAT_SCHEDULE = {
    "provisioning-sweep": {
        "task": "provisioning.sweep",
        "schedule": PROVISIONING_SWEEP_INTERVAL_SECONDS,
        # A sweep nobody ran in time is superseded by the next one.
        "options": {"expires": PROVISIONING_SWEEP_INTERVAL_SECONDS},
    },
    "remind-expiring-grants": {
        "task": "provisioning.remind_expiring",
        "schedule": EXPIRY_REMINDER_INTERVAL_SECONDS,
        "options": {"expires": EXPIRY_REMINDER_INTERVAL_SECONDS},
    },
    "check-drift": {
        "task": "provisioning.check_drift",
        "schedule": DRIFT_CHECK_INTERVAL_SECONDS,
        "options": {"expires": DRIFT_CHECK_INTERVAL_SECONDS},
    },
    "audit-checkpoint": {
        "task": "audit.verify_and_checkpoint",
        "schedule": AUDIT_CHECKPOINT_INTERVAL_SECONDS,
        "options": {"expires": AUDIT_CHECKPOINT_INTERVAL_SECONDS},
    },
    "tend-pending-approvals": {
        "task": "requests.tend_pending",
        "schedule": PENDING_APPROVAL_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": PENDING_APPROVAL_SWEEP_INTERVAL_SECONDS},
    },
}

# --- AWS --------------------------------------------------------------------
# AWS_ENDPOINT_URL is read by botocore itself and by provisioning.clients; the
# base credentials are the usual AWS_* variables or an instance role.
AWS_ENDPOINT_URL = os.environ.get("AWS_ENDPOINT_URL", "")

# --- REST framework ---------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "requests_app.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "requests_app.api.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["requests_app.api.parsers.JSONParser"],
    # requests_app/throttling.py: PORTAL_API_RATE per user on every call, and
    # PORTAL_AWS_RATE on the calls that make the portal call AWS.
    # Anonymous calls are counted by address, behind the same proxies as above.
    "NUM_PROXIES": PORTAL_PROXY_COUNT or None,
    "DEFAULT_THROTTLE_CLASSES": [
        "requests_app.throttling.ApiUserThrottle",
        "requests_app.throttling.AwsCallThrottle",
    ],
}
# API tokens (django-rest-knox with the portal's own token model). Only the
# SHA-512 digest and the first characters (the prefix and 9 more, for the
# lookup) are stored. Every token expires: its owner picks 1 to
# API_TOKEN_MAX_EXPIRY_DAYS days, API_TOKEN_DEFAULT_EXPIRY_DAYS if they don't.
KNOX_TOKEN_MODEL = "requests_app.ApiToken"
API_TOKEN_DEFAULT_EXPIRY_DAYS = int(os.environ.get("API_TOKEN_DEFAULT_EXPIRY_DAYS", "30"))
API_TOKEN_MAX_EXPIRY_DAYS = int(os.environ.get("API_TOKEN_MAX_EXPIRY_DAYS", "365"))
if not 1 <= API_TOKEN_DEFAULT_EXPIRY_DAYS <= API_TOKEN_MAX_EXPIRY_DAYS:
    raise ImproperlyConfigured("API_TOKEN_DEFAULT_EXPIRY_DAYS must be between 1 and API_TOKEN_MAX_EXPIRY_DAYS")
REST_KNOX = {
    "TOKEN_MODEL": KNOX_TOKEN_MODEL,
    "TOKEN_TTL": timedelta(days=API_TOKEN_DEFAULT_EXPIRY_DAYS),
    "AUTO_REFRESH": False,
    # Recognisable in a leaked log or a commit, so secret scanners can find them.
    "TOKEN_PREFIX": "dmsap_",
    "AUTH_HEADER_PREFIX": "Token",
}
# knox's own model is swapped out for requests_app.ApiToken: none of its tables are made.
MIGRATION_MODULES = {"knox": None}
# "<count>/<s|min|hour|day>"; empty turns the limit off.
PORTAL_API_RATE = os.environ.get("PORTAL_API_RATE", "300/min")
PORTAL_AWS_RATE = os.environ.get("PORTAL_AWS_RATE", "20/min")
# The rate limits count in this cache. Several web
# processes need one they share: CACHE_URL=redis://host:6379/1 (Django's
# RedisCache). Unset, each process keeps its own counts in memory, which is
# right for the embedded quickstart (one web process) and the tests.
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                          "KEY_PREFIX": "portal"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "portal"}}
SPECTACULAR_SETTINGS = {
    "TITLE": "DMS Access Portal API",
    "DESCRIPTION": (
        "File, approve and follow requests that let AWS DMS in a DataLake account read a database secret "
        "in a Remote account. Authenticate with `Authorization: Token <token>` (a personal token from the "
        "API tokens page or `POST /api/v1/tokens/`; for automation, `manage.py create_api_token USER`) "
        "or a browser session."
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and its assets come from the portal's own static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # A drift finding's kind and a report's kinds are one choice set.
    "ENUM_NAME_OVERRIDES": {
        "DriftKindEnum": "provisioning.drift.DRIFT_KINDS",
        "EngineEnum": "provisioning.names.ENGINES",
        "RuleVersionStateEnum": "requests_app.models.ApprovalRuleVersion.State",
        "StateEnum": "requests_app.models.RequestState",
    },
    # The schema states the text rules every CharField applies (no NUL, not blank),
    # and the 429 of the rate limits.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "requests_app.api.schema.constrain_text_inputs",
        "requests_app.api.schema.document_throttling",
    ],
}

# --- Operations -------------------------------------------------------------
# One JSON object per log line; the step runner's log_context() adds the
# request id and step to every line logged inside it. LOG_FORMAT=text gives
# plain lines for reading in a terminal.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
# At DEBUG botocore logs whole request and response bodies, and the answer to
# preflight's GetSecretValue (the secret shape check) holds the secret: the
# AWS SDK never logs below INFO, whatever LOG_LEVEL says.
AWS_SDK_LOG_LEVEL = LOG_LEVEL if LOG_LEVEL in {"WARNING", "ERROR", "CRITICAL"} else "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"log_context": {"()": "requests_app.logging_context.LogContextFilter"}},
    "formatters": {
        "json": {"()": "portal.log_format.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [request=%(request_id)s step=%(step)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["log_context"],
            "formatter": "text" if LOG_FORMAT == "text" else "json",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django's defaults give these loggers handlers of their own (plain text,
    # some only when DEBUG is on); route them through the one handler above.
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "botocore": {"handlers": [], "level": AWS_SDK_LOG_LEVEL, "propagate": True},
        "boto3": {"handlers": [], "level": AWS_SDK_LOG_LEVEL, "propagate": True},
        # Its one line at every process start repeats what settings.py says
        # (the version, the lockout parameters); lockouts still log.
        "axes.apps": {"handlers": [], "level": "WARNING", "propagate": True},
    },
}

# Mail: Django's own settings, from the environment; the console backend
# prints messages instead of sending them until a mail server is configured.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "DMS Access Portal <dms-access-portal@localhost>")
# Links in notifications point here.
PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Optional Slack-compatible incoming webhook: POST {"text": ...}.
NOTIFY_WEBHOOK_URL = os.environ.get("NOTIFY_WEBHOOK_URL", "")
NOTIFY_WEBHOOK_TIMEOUT = float(os.environ.get("NOTIFY_WEBHOOK_TIMEOUT", "3"))
# Optional Slack app (deploy/slack/manifest.yaml): posts each request to its
# Remote account's channel with Approve / Reject buttons, and takes the
# button presses at /slack/interactions. On when both the bot token and the
# signing secret are set.
SLACK_BOT_TOKEN = os.environ.get("SLACK_BOT_TOKEN", "")
SLACK_SIGNING_SECRET = os.environ.get("SLACK_SIGNING_SECRET", "")
if bool(SLACK_BOT_TOKEN) != bool(SLACK_SIGNING_SECRET):
    raise ImproperlyConfigured("SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set together or not at all")
SLACK_API_URL = os.environ.get("SLACK_API_URL", "https://slack.com/api/")
SLACK_TIMEOUT = int(os.environ.get("SLACK_TIMEOUT", "5"))
# When set, only people of this Slack workspace (team id T...) act through the app.
SLACK_TEAM_ID = os.environ.get("SLACK_TEAM_ID", "")

# When set, /metrics answers only scrapers that send "Authorization: Bearer
# <METRICS_TOKEN>" (set it in production; Prometheus: authorization.credentials).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# /readyz gives up on the broker after this many seconds.
READYZ_BROKER_TIMEOUT = float(os.environ.get("READYZ_BROKER_TIMEOUT", "2"))
# With several processes per host (gunicorn workers, the Celery pool), step
# metrics are shared through this directory (prometheus_client multiprocess
# mode); it must exist and be emptied when the processes start.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
# A worker on a host of its own serves its step metrics on this port.
WORKER_METRICS_PORT = int(os.environ.get("WORKER_METRICS_PORT", "0"))

# --- Single sign-on (OpenID Connect) ------------------------------------------
# Off unless a client id is configured; Django accounts keep working either way.
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
# Groups from the provider: at each login a user's groups are set from this
# claim (a list of names; "" turns it off), among the portal's existing groups
# that hold no Django permission and, when set, start with the prefix.
OIDC_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM", "groups")
OIDC_GROUPS_PREFIX = os.environ.get("OIDC_GROUPS_PREFIX", "")
if OIDC_ENABLED:
    OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
    OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
    OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "")
    OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "")
    OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "")
    OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_RP_SIGN_ALGO", "RS256")
    OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "openid email profile")
    # The provider's issuer: id tokens must name it (iss), and a portal user is
    # bound to the identity (iss, sub) at the first login.
    OIDC_OP_ISSUER = os.environ.get("OIDC_OP_ISSUER", "")
    OIDC_USE_PKCE = env_bool("OIDC_USE_PKCE", True)
    OIDC_CALLBACK_CLASS = "requests_app.web.oidc.PortalOIDCCallbackView"
    _missing = [
        name
        for name in (
            "OIDC_RP_CLIENT_SECRET", "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT",
            "OIDC_OP_ISSUER",
        )
        if not globals()[name]
    ] + (["OIDC_OP_JWKS_ENDPOINT"] if OIDC_RP_SIGN_ALGO.startswith("RS") and not OIDC_OP_JWKS_ENDPOINT else [])
    if _missing:
        raise ImproperlyConfigured(f"OIDC_RP_CLIENT_ID is set but these are not: {', '.join(_missing)}")
    INSTALLED_APPS.append("mozilla_django_oidc")
    AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "django.contrib.auth.backends.ModelBackend",
        "requests_app.web.oidc.PortalOIDCBackend",
    ]
    LOGIN_REDIRECT_URL_FAILURE = "/auth/login/"
