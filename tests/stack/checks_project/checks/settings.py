"""A small project for `up`'s checks; each failure mode is chosen by an environment variable.

- ``CHECKS_DEBUG`` (``1``/``0``) and ``CHECKS_ALLOWED_HOSTS`` (comma-separated, default ``*``);
- ``CHECKS_DB``: the SQLite file (not migrated: ``/`` then fails with "no such table");
- ``CHECKS_REDIS_URL``: the project's own channel layer Redis (for ``--keep-channel-layers``).
"""

import os

SECRET_KEY = "checks-project-tests-only"
DEBUG = os.environ.get("CHECKS_DEBUG", "1") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("CHECKS_ALLOWED_HOSTS", "*").split(",") if h]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "checks",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
]
ROOT_URLCONF = "checks.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CHECKS_DB", "/nonexistent/checks.sqlite3"),
    }
}
# Rooms keep their history: a client that reconnects resumes from its last offset.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_scale.layer.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ.get("CHECKS_REDIS_URL", "redis://127.0.0.1:6379/0")],
            "history": {"room.*": {"size": 100_000, "ttl": 600}},
        },
    }
}
# The stack serves static files from the workers when nginx does not: it needs STATIC_URL.
STATIC_URL = "static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
