"""Glory-Hole settings: every knob comes from the environment (see README)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from gloryhole_site import dns_env
from gloryhole_site.env import (
    database_from_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_privacy_list,
    env_proxy_ssl_header,
    env_str,
    env_time_zone,
)
from gloryhole_site.envfile import apply_env_file
from querylog.logger import config as query_log
from querylog.privacy import parse_dont_log_clients, parse_dont_log_domains

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
        DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only (gloryhole_site/filemodes.py)
        key = secrets.token_urlsafe(50)
        # O_EXCL: two processes starting together must not end up with different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return key_file.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


# --- Django core ---------------------------------------------------------------------
try:
    SECRET_KEY = _secret_key()
except OSError as exc:
    # An unwritable or impossible data folder: say so instead of a traceback from settings.
    raise ImproperlyConfigured(
        f"GLORYHOLE_DATA_DIR={str(DATA_DIR)!r}: cannot read or create the secret key file there "
        f"({exc.strerror or exc}); make the folder writable or set SECRET_KEY"
    ) from None
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "axes",
    "gloryhole_site",
    "dnsengine",
    "querylog",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before SecurityMiddleware, which redirects and sends HSTS by the forwarded scheme.
    "gloryhole_site.security.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "gloryhole_site.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused by django-axes into the lockout page (HTTP 429).
    "axes.middleware.AxesMiddleware",
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_time_zone("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Database -------------------------------------------------------------------------
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

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Web pages, login and the JSON API ------------------------------------------------
# Our own login page: Django admin's refuses non-staff users, who may still read the pages.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "querylog-dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Empty: the JSON API takes only signed-in sessions. Set it to let scripts send
# "Authorization: Bearer <token>".
GLORYHOLE_API_TOKEN = env_str("GLORYHOLE_API_TOKEN", "")
GLORYHOLE_UPLOAD_MAX_BYTES = env_int("GLORYHOLE_UPLOAD_MAX_BYTES", 100 * 1024 * 1024, minimum=1024)
GLORYHOLE_EXPORT_MAX_ROWS = env_int("GLORYHOLE_EXPORT_MAX_ROWS", 100_000, minimum=1, maximum=10_000_000)
GLORYHOLE_STATUS_REFRESH_SECONDS = env_float("GLORYHOLE_STATUS_REFRESH_SECONDS", 2.0, minimum=0.5, maximum=60)

# --- Logging --------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {
        "not_429": {
            "()": "django.utils.log.CallbackFilter",
            "callback": lambda record: getattr(record, "status_code", None) != 429,
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
    # Axes logs several lines per failed login, and Django one per refused try ("Too Many
    # Requests"): lines a guesser could multiply at will. throttle.py logs one per lockout.
    "loggers": {
        "axes": {"level": "ERROR"},
        "django.request": {"filters": ["not_429"]},
    },
}

# --- DNS engine (python manage.py rundns) ---------------------------------------------
# Raw values here; dnsengine.runtime.config.EngineConfig validates their meaning and names
# the setting in its error.
GLORYHOLE_DNS_HOST = env_str("GLORYHOLE_DNS_HOST", "127.0.0.1")
GLORYHOLE_DNS_PORT = env_int("GLORYHOLE_DNS_PORT", 5300, minimum=0, maximum=65535)
# Engine processes sharing the port (rundns --processes): a number, or "auto" for one per CPU.
GLORYHOLE_DNS_PROCESSES = env_str("GLORYHOLE_DNS_PROCESSES", "1")
GLORYHOLE_UPSTREAMS = dns_env.UPSTREAMS.read()
GLORYHOLE_UPSTREAM_TIMEOUT = env_float("GLORYHOLE_UPSTREAM_TIMEOUT", 2.0, minimum=0.05, maximum=30)
GLORYHOLE_MAX_INFLIGHT = env_int("GLORYHOLE_MAX_INFLIGHT", 2048, minimum=1, maximum=60000)
GLORYHOLE_BLOCKING_MODE = dns_env.BLOCKING_MODE.read()
GLORYHOLE_BLOCK_TTL = dns_env.BLOCK_TTL.read()
GLORYHOLE_CACHE_SIZE = dns_env.CACHE_SIZE.read()
# Client groups: source addresses whose group is remembered, and distinct per-group upstream lists.
GLORYHOLE_CLIENT_GROUP_CACHE_SIZE = env_int("GLORYHOLE_CLIENT_GROUP_CACHE_SIZE", 65536, minimum=1, maximum=10_000_000)
GLORYHOLE_GROUP_UPSTREAM_SETS = env_int("GLORYHOLE_GROUP_UPSTREAM_SETS", 8, minimum=0, maximum=64)
# Distinct upstream lists of conditional-forwarding rules, each with its own forwarder.
GLORYHOLE_FORWARDING_UPSTREAM_SETS = env_int("GLORYHOLE_FORWARDING_UPSTREAM_SETS", 16, minimum=0, maximum=256)
GLORYHOLE_CACHE_MAX_BYTES = env_int("GLORYHOLE_CACHE_MAX_BYTES", 64 << 20, minimum=1 << 20, maximum=1 << 40)
GLORYHOLE_CACHE_MIN_TTL = dns_env.CACHE_MIN_TTL.read()
GLORYHOLE_CACHE_MAX_TTL = dns_env.CACHE_MAX_TTL.read()
GLORYHOLE_CACHE_NEGATIVE_MAX_TTL = env_int("GLORYHOLE_CACHE_NEGATIVE_MAX_TTL", 3600, minimum=0, maximum=86400)
# Forwarded answers (docs/forwarding-answers.md): CNAME targets matched against the rules,
# expired answers served for this many seconds past expiry when every upstream fails (0: off),
# entries asked this many times during their TTL refreshed before they expire (0: off).
GLORYHOLE_CNAME_INSPECTION = env_bool("GLORYHOLE_CNAME_INSPECTION", True)
GLORYHOLE_SERVE_STALE_MAX_AGE = env_int("GLORYHOLE_SERVE_STALE_MAX_AGE", 86400, minimum=0, maximum=30 * 86400)
GLORYHOLE_PREFETCH_MIN_HITS = env_int("GLORYHOLE_PREFETCH_MIN_HITS", 3, minimum=0, maximum=1_000_000)
GLORYHOLE_TCP_MAX_CONNECTIONS = env_int("GLORYHOLE_TCP_MAX_CONNECTIONS", 256, minimum=1, maximum=10000)
GLORYHOLE_TCP_MAX_CONNECTIONS_PER_CLIENT = env_int(
    "GLORYHOLE_TCP_MAX_CONNECTIONS_PER_CLIENT", 16, minimum=1, maximum=10000
)
GLORYHOLE_TCP_IDLE_TIMEOUT = env_float("GLORYHOLE_TCP_IDLE_TIMEOUT", 10.0, minimum=0.1, maximum=3600)
# Encrypted DNS for the clients (docs/encrypted-dns.md): DoT (RFC 7858) and DoH (RFC 8484,
# /dns-query) on GLORYHOLE_DNS_HOST, both off unless a certificate and its key are given
# (PEM files, re-read when they change or on SIGHUP). Port 0 turns one of them off. Each
# listener has the TCP bounds above; a handshake not done in the timeout is closed.
GLORYHOLE_TLS_CERT = env_str("GLORYHOLE_TLS_CERT", "")
GLORYHOLE_TLS_KEY = env_str("GLORYHOLE_TLS_KEY", "")
GLORYHOLE_DOT_PORT = env_int("GLORYHOLE_DOT_PORT", 853, minimum=0, maximum=65535)
GLORYHOLE_DOH_PORT = env_int("GLORYHOLE_DOH_PORT", 443, minimum=0, maximum=65535)
GLORYHOLE_TLS_HANDSHAKE_TIMEOUT = env_float("GLORYHOLE_TLS_HANDSHAKE_TIMEOUT", 5.0, minimum=0.1, maximum=60)
# Largest DoH request accepted (a POST body, or a GET's decoded ?dns=); above it: 413.
GLORYHOLE_DOH_MAX_REQUEST = env_int("GLORYHOLE_DOH_MAX_REQUEST", 4096, minimum=512, maximum=65535)
# Names without a dot ("nas", "printer") are answered NXDOMAIN unless a local record names
# them; 1 forwards them upstream like any other name.
GLORYHOLE_FORWARD_SINGLE_LABEL = env_bool("GLORYHOLE_FORWARD_SINGLE_LABEL", False)
# Reverse lookups of private, loopback and link-local addresses (10.in-addr.arpa, d.f.ip6.arpa ...)
# are answered NXDOMAIN here (RFC 6303); 1 forwards them, e.g. to a router that knows the names.
GLORYHOLE_FORWARD_PRIVATE_REVERSE = env_bool("GLORYHOLE_FORWARD_PRIVATE_REVERSE", False)
GLORYHOLE_RELOAD_INTERVAL = dns_env.RELOAD_INTERVAL.read()
GLORYHOLE_ENGINE_NAME = env_str("GLORYHOLE_ENGINE_NAME", "")
# Seconds between the engine's EngineStatus updates (the status page).
GLORYHOLE_HEARTBEAT_INTERVAL = env_float("GLORYHOLE_HEARTBEAT_INTERVAL", 2.0, minimum=0.1, maximum=3600)
# 1: run the DNS core's pure-Python modules even when their compiled twin is built. Read by
# dnsengine/core/compiled.py itself (no Django there) when a core module is first imported, which
# is after this file has applied the env file; only checked here, so a typo stops start-up.
if os.environ.get("GLORYHOLE_NO_EXTENSIONS", "").strip() not in ("", "0", "1"):
    raise ImproperlyConfigured(
        f"GLORYHOLE_NO_EXTENSIONS={os.environ['GLORYHOLE_NO_EXTENSIONS']!r}: use 1 (pure Python) or 0 / empty"
    )
# 1: when the database does not answer at start, serve DNS without block lists until it
# does (fail open). 0 (the default): serve nothing until the lists are loaded.
GLORYHOLE_FAIL_OPEN = env_bool("GLORYHOLE_FAIL_OPEN", False)
# Who may ask: comma-separated IPs and CIDRs, IPv4 and IPv6 (docs/clients.md). ALLOWED empty
# lets everyone in; a DISALLOWED client is refused even when ALLOWED names it. A refused
# client gets REFUSED, or no answer with ACTION=drop (refuse|drop).
GLORYHOLE_ALLOWED_CLIENTS = env_str("GLORYHOLE_ALLOWED_CLIENTS", "")
GLORYHOLE_DISALLOWED_CLIENTS = env_str("GLORYHOLE_DISALLOWED_CLIENTS", "")
GLORYHOLE_REFUSED_CLIENTS_ACTION = env_str("GLORYHOLE_REFUSED_CLIENTS_ACTION", "refuse")
# Per-client rate limit, a token bucket: RATE_LIMIT queries per RATE_LIMIT_WINDOW seconds
# (Pi-hole's default); 0 turns it off. EXEMPT clients are never limited: loopback by default,
# where a local stub resolver asks for every program on the box. MAX_CLIENTS bounds the
# bucket table (a spoofed-source flood cannot grow it).
GLORYHOLE_RATE_LIMIT = env_int("GLORYHOLE_RATE_LIMIT", 1000, minimum=0, maximum=10_000_000)
GLORYHOLE_RATE_LIMIT_WINDOW = env_float("GLORYHOLE_RATE_LIMIT_WINDOW", 60.0, minimum=1, maximum=86400)
GLORYHOLE_RATE_LIMIT_EXEMPT = env_str("GLORYHOLE_RATE_LIMIT_EXEMPT", "127.0.0.0/8,::1")
GLORYHOLE_RATE_LIMIT_MAX_CLIENTS = env_int("GLORYHOLE_RATE_LIMIT_MAX_CLIENTS", 10000, minimum=1, maximum=10_000_000)

# --- Client names -------------------------------------------------------------------
# Names of the clients, found in the background (dnsengine/runtime/client_names.py): a
# hosts-format file (a router's DHCP leases exported as hosts; re-read when it changes),
# then reverse lookups sent to one resolver (`host[:port]`, typically the router; empty:
# none). CLIENT_NAMES_MAX bounds the clients remembered; a new one past it is counted.
GLORYHOLE_CLIENT_HOSTS_FILE = env_str("GLORYHOLE_CLIENT_HOSTS_FILE", "")
GLORYHOLE_CLIENT_PTR_RESOLVER = env_str("GLORYHOLE_CLIENT_PTR_RESOLVER", "")
GLORYHOLE_CLIENT_PTR_TIMEOUT = env_float("GLORYHOLE_CLIENT_PTR_TIMEOUT", 1.0, minimum=0.05, maximum=10)
GLORYHOLE_CLIENT_PTR_PER_SECOND = env_int("GLORYHOLE_CLIENT_PTR_PER_SECOND", 20, minimum=1, maximum=1000)
GLORYHOLE_CLIENT_PTR_TTL = env_float("GLORYHOLE_CLIENT_PTR_TTL", 3600.0, minimum=10, maximum=7 * 86400)
GLORYHOLE_CLIENT_NAMES_MAX = env_int("GLORYHOLE_CLIENT_NAMES_MAX", 10000, minimum=1, maximum=1_000_000)
GLORYHOLE_CLIENT_NAMES_REFRESH = env_float("GLORYHOLE_CLIENT_NAMES_REFRESH", 60.0, minimum=1, maximum=86400)

# --- Local records -------------------------------------------------------------------
# A hosts-format file (`address name [alias...]`) whose names the engine answers as local
# A/AAAA records with their PTR (docs/local-dns.md); re-read when its mtime or size changes.
# Records from the web page win over it for the same name and type. "" for none.
GLORYHOLE_LOCAL_HOSTS_FILE = env_str("GLORYHOLE_LOCAL_HOSTS_FILE", "")

# --- Query log ----------------------------------------------------------------------
# Each one's parser, default and bounds: its row in querylog/logger/config.py, which
# QueryLogConfig also re-reads on SIGHUP.
GLORYHOLE_QUERY_LOG_ENABLED = query_log.ENABLED.read()
GLORYHOLE_QUERY_LOG_MODE = query_log.MODE.read()
GLORYHOLE_QUERY_LOG_BUFFER = query_log.BUFFER.read()
GLORYHOLE_QUERY_LOG_WORKERS = query_log.WORKERS.read()
GLORYHOLE_QUERY_LOG_BATCH = query_log.BATCH.read()
GLORYHOLE_QUERY_LOG_FLUSH_INTERVAL = query_log.FLUSH_INTERVAL.read()
GLORYHOLE_QUERY_LOG_ROLLUPS = query_log.ROLLUPS.read()
GLORYHOLE_QUERY_LOG_CLOSE_TIMEOUT = query_log.CLOSE_TIMEOUT.read()
GLORYHOLE_QUERY_LOG_RETENTION_DAYS = query_log.RETENTION_DAYS.read()
GLORYHOLE_QUERY_LOG_PURGE_INTERVAL = query_log.PURGE_INTERVAL.read()
# Days of rollups (the dashboard's per-minute and per-hour counts) kept; 0 keeps them all.
# GLORYHOLE_QUERY_LOG_RETENTION_DAYS above is the detailed rows'.
GLORYHOLE_ROLLUP_RETENTION_DAYS = query_log.ROLLUP_RETENTION_DAYS.read()

# --- Settings page (/settings/, docs/web-ui.md#settings) ----------------------------------
# The GLORYHOLE_* variables set in the environment (or the env file): each one wins over
# the value saved on /settings/, which shows it as fixed, and running engines ignore the
# saved value.
GLORYHOLE_SET_IN_ENVIRONMENT = frozenset(
    name for name, value in os.environ.items() if name.startswith("GLORYHOLE_") and value.strip()
)

# --- Privacy (docs/privacy.md) ---------------------------------------------------------
# Each one, when set, wins over the value saved on /settings/privacy/ (shown there as fixed);
# unset (None), the saved value or the default applies. Engines follow changes live.
GLORYHOLE_PRIVACY_LEVEL = env_int("GLORYHOLE_PRIVACY_LEVEL", None, minimum=0, maximum=3)
GLORYHOLE_ANONYMIZE_CLIENTS = env_bool("GLORYHOLE_ANONYMIZE_CLIENTS", None)
GLORYHOLE_ANONYMIZE_V4_PREFIX = env_int("GLORYHOLE_ANONYMIZE_V4_PREFIX", None, minimum=0, maximum=32)
GLORYHOLE_ANONYMIZE_V6_PREFIX = env_int("GLORYHOLE_ANONYMIZE_V6_PREFIX", None, minimum=0, maximum=128)
GLORYHOLE_DONT_LOG_CLIENTS = env_privacy_list("GLORYHOLE_DONT_LOG_CLIENTS", parse_dont_log_clients)
GLORYHOLE_DONT_LOG_DOMAINS = env_privacy_list("GLORYHOLE_DONT_LOG_DOMAINS", parse_dont_log_domains)
GLORYHOLE_LOG_BLOCKED_ONLY = env_bool("GLORYHOLE_LOG_BLOCKED_ONLY", None)

# --- Blocklists -----------------------------------------------------------------------
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

# --- Guard rails on blocking ----------------------------------------------------------
# A block rule added by a person (history, blocklists page, admin) that covers at least
# this percent of the last 24 h's queries needs a second, confirmed submit.
GLORYHOLE_BLOCK_CONFIRM_SHARE = env_float("GLORYHOLE_BLOCK_CONFIRM_SHARE", 10.0, minimum=0, maximum=100)

# --- Metrics --------------------------------------------------------------------------
# The engine's Prometheus endpoint (rundns); port 0 turns it off.
GLORYHOLE_METRICS_HOST = env_str("GLORYHOLE_METRICS_HOST", "127.0.0.1")
GLORYHOLE_METRICS_PORT = env_int("GLORYHOLE_METRICS_PORT", 9153, minimum=0, maximum=65535)
# The web's /metrics answers a staff session or the API token; these addresses may
# scrape it without either (a Prometheus on a private network). Empty: nobody.
GLORYHOLE_WEB_METRICS_OPEN_TO = env_networks("GLORYHOLE_WEB_METRICS_OPEN_TO", "")

# --- Security: cookies, headers, HTTPS behind a proxy ---------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Reverse proxies in front of the web (addresses or networks). Only requests from them
# may say who the client is (X-Forwarded-For) and that it came over HTTPS
# (SECURE_PROXY_SSL_HEADER); from anyone else those headers are ignored, or a guesser
# would name a new address for every try (gloryhole_site/security.py).
GLORYHOLE_TRUSTED_PROXIES = env_networks("GLORYHOLE_TRUSTED_PROXIES", "")
# Off unless set: `X-Forwarded-Proto` (meaning "=https") or `Header-Name=value`.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
if SECURE_PROXY_SSL_HEADER and not GLORYHOLE_TRUSTED_PROXIES:
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER is set but GLORYHOLE_TRUSTED_PROXIES is empty: name the proxy that sends it"
        " (e.g. GLORYHOLE_TRUSTED_PROXIES=127.0.0.1)"
    )
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS", "")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# HSTS is sent only over HTTPS and browsers remember it: off until asked for.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0, maximum=2 * 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Django's defaults, stated because the tests check them: nosniff and same-origin referrers.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Login throttling (django-axes) ---------------------------------------------------
# After FAILURE_LIMIT failed logins for one username, or from one client address, every
# login for it (the right password included) is refused for LOCKOUT_SECONDS, doubled with
# each further lockout within a day, up to LOCKOUT_MAX_SECONDS (gloryhole_site/throttle.py).
# Unlock: manage.py axes_reset_username NAME.
GLORYHOLE_LOGIN_FAILURE_LIMIT = env_int("GLORYHOLE_LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=1000)
GLORYHOLE_LOGIN_LOCKOUT_SECONDS = env_int("GLORYHOLE_LOGIN_LOCKOUT_SECONDS", 60, minimum=1, maximum=7 * 86400)
GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS = env_int("GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS", 3600, minimum=1, maximum=7 * 86400)
if GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS < GLORYHOLE_LOGIN_LOCKOUT_SECONDS:
    raise ImproperlyConfigured(
        f"GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS={GLORYHOLE_LOGIN_LOCKOUT_MAX_SECONDS} is below"
        f" GLORYHOLE_LOGIN_LOCKOUT_SECONDS={GLORYHOLE_LOGIN_LOCKOUT_SECONDS}"
    )
# The axes backend only refuses locked-out logins; ModelBackend checks passwords.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = GLORYHOLE_LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_COOLOFF_TIME = "gloryhole_site.throttle.login_cool_off"
AXES_HANDLER = "gloryhole_site.throttle.LoginAttemptHandler"
AXES_CLIENT_IP_CALLABLE = "gloryhole_site.security.client_address"
# Each attempt keeps the expiry computed when it failed: the cool-off differs per client,
# and axes would otherwise clear everybody's attempts by the current request's cool-off.
AXES_USE_ATTEMPT_EXPIRATION = True
# One row per failure (admin: Axes > Access failures); the lockout's growth counts them.
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# A success must not wipe the address's failures: anyone with a read-only account could
# otherwise reset the count between guesses at the admin's password.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
