"""Settings of the channels-scale example project.

Everything a deployment changes comes from the environment:
``SECRET_KEY``, ``DEBUG``, ``ALLOWED_HOSTS`` (comma-separated), ``DATABASE_URL`` (default: SQLite
in the data directory; ``postgres://...`` for PostgreSQL), and the ``CHANNELS_SCALE_*`` variables
that ``channels-scale up`` sets (layer, Redis URL, worker id, maximum message size, and
``CHANNELS_SCALE_EXAMPLE_DATA``: the directory of the SQLite file and collected static files,
default this project's directory; ``up`` points it at the run directory when the example runs
from an installed wheel, whose own directory is site-packages).
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import dj_database_url

from channels_scale.layer.config import split_hosts
from channels_scale.settings import REDIS_URL_ENV, channel_layers_from_env

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CHANNELS_SCALE_EXAMPLE_DATA") or BASE_DIR)

SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = os.environ.get("DEBUG", "0") == "1"
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h
]

INSTALLED_APPS = [
    # daphne's runserver, when the [daphne] extra is there; `up` itself does not need it.
    *(["daphne"] if find_spec("daphne") else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "channels_scale",
    "broadcast",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
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
    "default": dj_database_url.config(
        default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker processes write to one SQLite file: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

# Chat rooms keep their last 1,000 messages for a day: a client that lost its connection resumes
# from its last offset (channels_scale.history); the broadcast endpoint keeps none.
CHANNEL_LAYERS = channel_layers_from_env(
    options={"history": {"chat.*": {"size": 1000, "ttl": 86400}}}
)

# Django's cache holds the failed-login counts (chat.throttle): the stack's Redis when there is
# one, so every worker counts together; else this process's memory. Django's Redis cache speaks
# to one server: with shards it uses the first; a Cluster or Sentinel URL (which its client
# cannot parse) keeps the per-process memory cache, so logins are throttled per worker there.
_CACHE_REDIS = split_hosts(os.environ.get(REDIS_URL_ENV, "")) or [""]
if _CACHE_REDIS[0].startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _CACHE_REDIS[0],
            "KEY_PREFIX": "example",
        }
    }
LOGIN_FAILURES_PER_USER = 5
LOGIN_FAILURES_PER_IP = 20
LOGIN_FAILURE_WINDOW = 60  # seconds

# A client that does not read is closed with 1013 once this many bytes wait for it
# (channels_scale.consumers.outgoing; 0 turns the bound off).
WEBSOCKET_MAX_OUTGOING_BYTES = int(
    os.environ.get("CHANNELS_SCALE_MAX_OUTGOING_BYTES", str(1 << 20))
)

# Frames over this size close the websocket with 1009 (uvicorn enforces it too, from the same
# variable, through `channels-scale up --max-message-bytes`).
WEBSOCKET_MAX_MESSAGE_BYTES = int(os.environ.get("CHANNELS_SCALE_MAX_MESSAGE_BYTES", "65536"))

# Pages on these origins may open websockets besides the site's own (comma-separated full origins,
# https://app.example.com, or ALLOWED_HOSTS-style patterns); unset: ALLOWED_HOSTS. Others: HTTP 403.
if os.environ.get("ALLOWED_ORIGINS"):
    CHANNELS_SCALE_ALLOWED_ORIGINS = [
        o.strip() for o in os.environ["ALLOWED_ORIGINS"].split(",") if o.strip()
    ]

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "staticfiles"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
