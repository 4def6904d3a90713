"""Glory-Hole settings: every knob comes from the environment (see README)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gloryhole_site.env import database_from_url, env_bool, env_float, env_int, env_str
from gloryhole_site.envfile import apply_env_file

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("GLORYHOLE_DATA_DIR", str(BASE_DIR / "data")))
ENV_FILE = Path(env_str("GLORYHOLE_ENV_FILE", str(DATA_DIR / "gloryhole.env")))
apply_env_file(ENV_FILE, override=False)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once into the data folder."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    key_file = DATA_DIR / ".secret_key"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        # O_EXCL: two processes starting together must not end up with different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return key_file.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "dnsengine",
    "querylog",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "gloryhole_site.urls"

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

WSGI_APPLICATION = "gloryhole_site.wsgi.application"

DATABASES = {
    "default": database_from_url(
        "DATABASE_URL",
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'gloryhole.sqlite3'}"),
        BASE_DIR,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not Django's in-memory default: the end-to-end tests run rundns as a
    # subprocess that must see the same database. One per test process, so two
    # test runs on one machine do not delete each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
LOGIN_URL = "admin:login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- DNS engine (python manage.py rundns) -------------------------------------------
# Raw values here; dnsengine.config.EngineConfig validates their meaning and names
# the setting in its error.
GLORYHOLE_DNS_HOST = env_str("GLORYHOLE_DNS_HOST", "127.0.0.1")
GLORYHOLE_DNS_PORT = env_int("GLORYHOLE_DNS_PORT", 5300, minimum=0, maximum=65535)
GLORYHOLE_UPSTREAMS = env_str("GLORYHOLE_UPSTREAMS", "1.1.1.1,9.9.9.9")
GLORYHOLE_UPSTREAM_TIMEOUT = env_float("GLORYHOLE_UPSTREAM_TIMEOUT", 2.0, minimum=0.05, maximum=30)
GLORYHOLE_MAX_INFLIGHT = env_int("GLORYHOLE_MAX_INFLIGHT", 2048, minimum=1, maximum=60000)
GLORYHOLE_BLOCKING_MODE = env_str("GLORYHOLE_BLOCKING_MODE", "null")
GLORYHOLE_BLOCK_TTL = env_int("GLORYHOLE_BLOCK_TTL", 10, minimum=0, maximum=86400)
GLORYHOLE_CACHE_SIZE = env_int("GLORYHOLE_CACHE_SIZE", 20000, minimum=0, maximum=10_000_000)
GLORYHOLE_CACHE_MIN_TTL = env_int("GLORYHOLE_CACHE_MIN_TTL", 0, minimum=0, maximum=86400)
GLORYHOLE_CACHE_MAX_TTL = env_int("GLORYHOLE_CACHE_MAX_TTL", 86400, minimum=0, maximum=604800)
GLORYHOLE_CACHE_NEGATIVE_MAX_TTL = env_int("GLORYHOLE_CACHE_NEGATIVE_MAX_TTL", 3600, minimum=0, maximum=86400)
GLORYHOLE_TCP_MAX_CONNECTIONS = env_int("GLORYHOLE_TCP_MAX_CONNECTIONS", 256, minimum=1, maximum=10000)
GLORYHOLE_TCP_IDLE_TIMEOUT = env_float("GLORYHOLE_TCP_IDLE_TIMEOUT", 10.0, minimum=0.1, maximum=3600)
GLORYHOLE_RELOAD_INTERVAL = env_float("GLORYHOLE_RELOAD_INTERVAL", 2.0, minimum=0.1, maximum=60)
GLORYHOLE_ENGINE_NAME = env_str("GLORYHOLE_ENGINE_NAME", "")
GLORYHOLE_METRICS_PORT = env_int("GLORYHOLE_METRICS_PORT", 9153, minimum=0, maximum=65535)

# --- Query log ----------------------------------------------------------------------
GLORYHOLE_QUERY_LOG_ENABLED = env_bool("GLORYHOLE_QUERY_LOG_ENABLED", True)
GLORYHOLE_QUERY_LOG_MODE = env_str("GLORYHOLE_QUERY_LOG_MODE", "pool")
GLORYHOLE_QUERY_LOG_BUFFER = env_int("GLORYHOLE_QUERY_LOG_BUFFER", 50000, minimum=1, maximum=10_000_000)
GLORYHOLE_QUERY_LOG_WORKERS = env_int("GLORYHOLE_QUERY_LOG_WORKERS", 1, minimum=1, maximum=64)
GLORYHOLE_QUERY_LOG_BATCH = env_int("GLORYHOLE_QUERY_LOG_BATCH", 2000, minimum=1, maximum=100000)
GLORYHOLE_QUERY_LOG_FLUSH_INTERVAL = env_float("GLORYHOLE_QUERY_LOG_FLUSH_INTERVAL", 0.5, minimum=0.01, maximum=60)
GLORYHOLE_QUERY_LOG_RETENTION_DAYS = env_int("GLORYHOLE_QUERY_LOG_RETENTION_DAYS", 7, minimum=0, maximum=3650)

# --- Web (added) --------------------------------------------------------------------
STATICFILES_DIRS = [BASE_DIR / "static"]
# Our own login page: Django admin's refuses non-staff users, who may still read the pages.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "querylog-dashboard"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Empty: the JSON API takes only signed-in sessions. Set it to let scripts send
# "Authorization: Bearer <token>".
GLORYHOLE_API_TOKEN = env_str("GLORYHOLE_API_TOKEN", "")
GLORYHOLE_UPLOAD_MAX_BYTES = env_int("GLORYHOLE_UPLOAD_MAX_BYTES", 100 * 1024 * 1024, minimum=1024)
GLORYHOLE_EXPORT_MAX_ROWS = env_int("GLORYHOLE_EXPORT_MAX_ROWS", 100_000, minimum=1, maximum=10_000_000)
GLORYHOLE_STATUS_REFRESH_SECONDS = env_float("GLORYHOLE_STATUS_REFRESH_SECONDS", 2.0, minimum=0.5, maximum=60)

# --- Query log (added) --------------------------------------------------------------
# Rollup tables for the dashboard, written in the same transaction as each batch.
GLORYHOLE_QUERY_LOG_ROLLUPS = env_bool("GLORYHOLE_QUERY_LOG_ROLLUPS", True)
# How long rundns waits on stop for queued entries to be written.
GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT = env_float("GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT", 30.0, minimum=0, maximum=3600)
# Seconds between retention purges in the engine (GLORYHOLE_QUERY_LOG_RETENTION_DAYS=0 keeps everything).
GLORYHOLE_QUERY_LOG_PURGE_INTERVAL = env_float("GLORYHOLE_QUERY_LOG_PURGE_INTERVAL", 3600.0, minimum=10, maximum=604800)
GLORYHOLE_HEARTBEAT_INTERVAL = env_float("GLORYHOLE_HEARTBEAT_INTERVAL", 2.0, minimum=0.1, maximum=3600)
# The engine's /metrics listens here on GLORYHOLE_METRICS_PORT (0 disables it).
GLORYHOLE_METRICS_HOST = env_str("GLORYHOLE_METRICS_HOST", "127.0.0.1")

# --- Blocklists (added) -------------------------------------------------------------
# The engine refreshes URL subscriptions this often (with a few % of jitter); 0 leaves it
# to `manage.py updateblocklists` from cron or a systemd timer.
GLORYHOLE_BLOCKLIST_UPDATE_HOURS = env_float("GLORYHOLE_BLOCKLIST_UPDATE_HOURS", 24.0, minimum=0, maximum=24 * 30)
# A list (download after gzip decompression, file or upload) is refused past this many bytes
# or distinct names, reading stopped there, the old contents kept. The names bound the import's
# memory and every engine's (the biggest public lists hold about 1M); FETCH_MAX_SECONDS bounds
# a whole download, FETCH_TIMEOUT each connect and read.
GLORYHOLE_BLOCKLIST_MAX_BYTES = env_int("GLORYHOLE_BLOCKLIST_MAX_BYTES", 100 * 1024 * 1024, minimum=1024)
GLORYHOLE_BLOCKLIST_MAX_NAMES = env_int("GLORYHOLE_BLOCKLIST_MAX_NAMES", 2_000_000, minimum=1)
GLORYHOLE_BLOCKLIST_FETCH_TIMEOUT = env_float("GLORYHOLE_BLOCKLIST_FETCH_TIMEOUT", 30.0, minimum=0.1, maximum=600)
GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS = env_float(
    "GLORYHOLE_BLOCKLIST_FETCH_MAX_SECONDS", 600.0, minimum=1, maximum=24 * 3600
)
GLORYHOLE_BLOCKLIST_MAX_REDIRECTS = env_int("GLORYHOLE_BLOCKLIST_MAX_REDIRECTS", 5, minimum=0, maximum=30)
