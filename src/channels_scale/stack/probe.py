"""``python -m channels_scale.stack.probe``: import the app as a worker would, before anything runs.

Run by ``channels-scale up`` in a subprocess with the workers' environment. Prints one line,
``channels-scale-probe:`` followed by JSON: ``{"error": ONE_LINE}`` when the app cannot be
served — with the file and line of a settings error, a hint at ``--pythonpath`` for a missing
module, and the name of the problem when the target is not an ASGI application — or what the
stack needs to know (static files, whether ``SECRET_KEY`` is the public default).
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import traceback
from typing import Any

from channels_scale.stack.app import APP_ENV, NotAnASGIApp, check_asgi, load_application

MARK = "channels-scale-probe:"
#: The example project's fallback ``SECRET_KEY``: public, so a session cookie signed offline with
#: it is accepted by any stack that still uses it.
PUBLIC_SECRET_KEY = "dev-only-insecure-key-change-me-in-production"


def _where(exc: BaseException) -> str:
    """``file, line N: `` of the deepest frame in the user's code (not the stdlib, Django, us)."""
    library = {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")}
    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        name = frame.filename
        if name.startswith("<") or name.startswith(ours):
            continue
        if any(name.startswith(prefix) for prefix in library):
            continue
        return f"{name}, line {frame.lineno}: "
    return ""


def explain(exc: BaseException) -> str:
    """One line that says what is wrong with the app and, when we can tell, how to fix it."""
    if isinstance(exc, SyntaxError):
        return f"{exc.filename}, line {exc.lineno}: SyntaxError: {exc.msg}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        return (
            f"No module named {exc.name!r}: run up from the directory that holds {top}/, pass "
            f"--pythonpath DIR naming that directory, or install {top}"
        )
    if isinstance(exc, NotAnASGIApp):
        return str(exc)
    message = " ".join(str(exc).split()) or "(no message)"
    return f"{_where(exc)}{type(exc).__name__}: {message}"


def facts() -> dict[str, Any]:
    from channels_scale.stack.overlay import probe_facts

    found: dict[str, Any] = {"static_url": None, "static_root": None, **probe_facts()}
    if "django" not in sys.modules:
        return found
    from django.conf import settings

    if not settings.configured:
        return found
    found["static_url"] = settings.STATIC_URL
    found["static_root"] = str(settings.STATIC_ROOT) if settings.STATIC_ROOT else None
    key = getattr(settings, "SECRET_KEY", None)
    found["public_secret_key"] = key == PUBLIC_SECRET_KEY
    found["secret_key_from_env"] = key is not None and key == os.environ.get("SECRET_KEY")
    if found["static_root"] and os.environ.get("CHANNELS_SCALE_COLLECTSTATIC") == "1":
        from django.core.management import call_command

        call_command("collectstatic", interactive=False, verbosity=0)
    return found


def main() -> int:
    path = os.environ[APP_ENV]
    try:
        check_asgi(load_application(path), path)
        answer = facts()
    except Exception as exc:
        answer = {"error": explain(exc)}
    print(MARK + json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
