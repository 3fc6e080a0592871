"""The same app, but its settings module is forced (assigned, not ``setdefault``): the stack's
settings overlay is bypassed, and ``up`` must notice."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "checks.settings"

from checks.asgi import application

__all__ = ["application"]
