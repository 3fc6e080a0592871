"""The ASGI application each worker of the stack serves.

It imports the user's application named by ``CHANNELS_SCALE_APP`` (``module:attribute``), serves
static files from the workers when the load balancer does not (``CHANNELS_SCALE_SERVE_STATIC=1``),
and wraps it all in :class:`~channels_scale.asgi.WorkerMiddleware` (``/healthz``).
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any, cast

from channels_scale.asgi import ASGIApp, WorkerMiddleware

APP_ENV = "CHANNELS_SCALE_APP"


def load_application(path: str) -> ASGIApp:
    """Import ``module:attribute``; raises ``ImportError``/``AttributeError`` with the path."""
    module_name, _, attribute = path.partition(":")
    module = import_module(module_name)
    try:
        return cast(ASGIApp, getattr(module, attribute))
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no attribute {attribute!r}") from None


def build() -> WorkerMiddleware:
    app = load_application(os.environ.get(APP_ENV, "config.asgi:application"))
    if os.environ.get("CHANNELS_SCALE_SERVE_STATIC") == "1":
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        app = cast(ASGIApp, ASGIStaticFilesHandler(cast(Any, app)))
    return WorkerMiddleware(app)


application = build()
