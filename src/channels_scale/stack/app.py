"""The ASGI application each worker of the stack serves.

It imports the user's application named by ``CHANNELS_SCALE_APP`` (``module:attribute``), serves
static files from the workers when the load balancer does not (``CHANNELS_SCALE_SERVE_STATIC=1``),
and wraps it all in :class:`~channels_scale.asgi.WorkerMiddleware` (``/healthz``).
"""

from __future__ import annotations

import inspect
import os
import sys
from importlib import import_module
from typing import Any, cast

from channels_scale.asgi import ASGIApp, WorkerMiddleware

APP_ENV = "CHANNELS_SCALE_APP"


class NotAnASGIApp(TypeError):
    """``--app`` names something that is not an ASGI application (a WSGI app, a string...)."""


def load_application(path: str) -> object:
    """Import ``module:attribute``; raises ``ImportError``/``AttributeError`` with the path."""
    module_name, _, attribute = path.partition(":")
    module = import_module(module_name)
    try:
        return cast(object, getattr(module, attribute))
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no attribute {attribute!r}") from None


def _is_wsgi(app: object) -> bool:
    """Django's WSGIHandler, or a plain callable of two arguments (environ, start_response).

    An ASGI 3 application takes three (scope, receive, send); legacy ASGI 2 classes take one, and
    are let through (as are callables whose signature cannot be read).
    """
    wsgi = sys.modules.get("django.core.handlers.wsgi")
    if wsgi is not None and isinstance(app, wsgi.WSGIHandler):
        return True
    if inspect.isclass(app):
        return False
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call):
        return False
    try:
        signature = inspect.signature(cast(Any, app))
    except (TypeError, ValueError):
        return False

    def takes(count: int) -> bool:
        try:
            signature.bind(*range(count))
        except TypeError:
            return False
        return True

    return takes(2) and not takes(3)


def check_asgi(app: object, path: str) -> ASGIApp:
    """``app`` if it can be an ASGI application; :class:`NotAnASGIApp` naming the problem if not."""
    module = path.partition(":")[0]
    if not callable(app):
        raise NotAnASGIApp(
            f"{path} is a {type(app).__name__}, not an ASGI application: name your project's "
            "ASGI callable, e.g. mysite.asgi:application"
        )
    if _is_wsgi(app):
        suggestion = module.rpartition(".")[0] + ".asgi:application" if "." in module else None
        raise NotAnASGIApp(
            f"{path} is a WSGI application; channels-scale runs ASGI applications: pass your "
            "project's asgi.py" + (f", e.g. --app {suggestion}" if suggestion else "")
        )
    return cast(ASGIApp, app)


def build() -> WorkerMiddleware:
    path = os.environ.get(APP_ENV, "config.asgi:application")
    app = check_asgi(load_application(path), path)
    if os.environ.get("CHANNELS_SCALE_SERVE_STATIC") == "1":
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        app = cast(ASGIApp, ASGIStaticFilesHandler(cast(Any, app)))
    return WorkerMiddleware(app)


def __getattr__(name: str) -> Any:
    # Built on first access (the server's ``getattr(module, "application")``), not at import:
    # the probe imports this module for its checks without loading the app here.
    if name == "application":
        app = build()
        globals()["application"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
