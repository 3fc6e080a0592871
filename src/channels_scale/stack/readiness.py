"""Is the user's app serving? ``up`` asks each worker's ``/readyz``, then the app itself.

After every worker answers ``/healthz`` (:meth:`Stack._wait_healthy`), :func:`check`:

1. asks every worker's ``/readyz`` over its own socket: its channel layer must answer a send +
   receive round trip (and, unless ``--keep-channel-layers``, be the layer on the stack's Redis:
   an ``asgi.py`` that forces ``DJANGO_SETTINGS_MODULE`` would bypass the settings overlay);
2. sends ``GET --ready-path`` (default ``/``) through the load balancer: 5xx, 400 (Django's answer
   to a ``Host`` outside ``ALLOWED_HOSTS``) or no answer is a failure;
3. with ``--ready-ws-path``, completes a websocket handshake there (with a same-origin ``Origin``,
   as a browser would send, so origin validators accept it).

A failure raises :class:`ConfigError` with one line: what was asked, what came back, and Django's
own explanation, found by replaying the request in the workers' environment with Django's test
client (which logs ``DisallowedHost`` and re-raises a view's exception, even with ``DEBUG=False``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from channels_scale.exceptions import ConfigError
from channels_scale.net import timeout_factor
from channels_scale.settings import on_hosts, redact
from channels_scale.stack.configs import worker_environment

if TYPE_CHECKING:
    from channels_scale.stack.runner import Stack

#: how long `up` waits for every worker's /readyz (a fresh Redis may take a moment to answer)
READY_TIMEOUT_S = 10.0

#: Django's messages and what to do about them.
HINTS = (
    ("no such table", "run `python manage.py migrate` with the same settings"),
    ("does not exist", "run `python manage.py migrate` with the same settings"),
    ("ALLOWED_HOSTS", "add the host to ALLOWED_HOSTS in the project's settings"),
    ("DisallowedHost", "add the host to ALLOWED_HOSTS in the project's settings"),
    ("SECRET_KEY", "set SECRET_KEY in the project's settings"),
    ("No route found", "no websocket route matches this path (see the app's URLRouter)"),
)
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Configured): .+$")

_DIAGNOSE = """
import json, logging, os, sys
from channels_scale.stack.app import load_application
load_application(os.environ["CHANNELS_SCALE_APP"])
from django.test import Client

found = []
class Keep(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = f"{type(exc).__name__}: {exc}"
        if text not in found:
            found.append(text)
for name in ("django.request", "django.security"):
    logging.getLogger(name).addHandler(Keep(logging.WARNING))
status = None
try:
    status = Client(HTTP_HOST=sys.argv[1]).get(sys.argv[2]).status_code
except Exception as exc:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if text not in found:
        found.append(text)
print(json.dumps({"status": status, "found": found}))
"""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def worker_request(
    socket_path: Path,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, Any]] | None:
    """``(status, JSON body)`` of a request to one worker over its socket; None: no answer."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
    except OSError:
        return None
    finally:
        connection.close()
    try:
        content = json.loads(body)
    except ValueError:
        content = {}
    return response.status, content if isinstance(content, dict) else {}


def hint(text: str) -> str:
    """What to do about a Django message, or ``""``."""
    for needle, advice in HINTS:
        if needle in text:
            return advice
    return ""


def check(stack: Stack) -> str:
    """Raise :class:`ConfigError` unless the app serves; the layer line ``up`` prints."""
    summary = _check_workers(stack)
    _check_http(stack)
    if stack.options.ready_ws_path:
        _check_websocket(stack, stack.options.ready_ws_path)
    return summary


def _check_workers(stack: Stack) -> str:
    options = stack.options
    deadline = time.monotonic() + READY_TIMEOUT_S * timeout_factor()
    answers: list[dict[str, Any]] = []
    for worker in range(options.workers):
        socket_path = stack.layout.worker_socket(worker)
        while True:
            answer = worker_request(socket_path, "/readyz")
            if answer is not None and answer[0] == 200:
                answers.append(answer[1])
                break
            if time.monotonic() > deadline:
                reason = answer[1].get("reason", "?") if answer else "no answer"
                layer = (answer[1].get("layer") if answer else None) or {}
                where = f" ({layer['backend']} on {layer['hosts']})" if layer else ""
                fix = (
                    "start that Redis, fix the project's CHANNEL_LAYERS, or leave out "
                    "--keep-channel-layers to use the stack's Redis"
                    if options.keep_channel_layers
                    else f"see {stack.layout.logs / f'worker-{worker}.log'}"
                )
                raise ConfigError(f"worker-{worker} is not ready: {reason}{where}: {fix}")
            time.sleep(0.2)
    layers = [a.get("layer") for a in answers]
    if not options.keep_channel_layers and any(layers):
        stack_redis = redact(stack.redis_url)
        for worker, layer in enumerate(layers):
            if layer and not on_hosts(stack.redis_url, str(layer.get("hosts"))):
                raise ConfigError(
                    f"worker-{worker}'s channel layer is {layer['backend']} on {layer['hosts']}, "
                    f"not the stack's Redis {stack_redis}: the app sets DJANGO_SETTINGS_MODULE "
                    "itself; use os.environ.setdefault(...) in its asgi.py, or pass "
                    "--keep-channel-layers"
                )
    if not any(layers):
        return stack.layer_summary
    slowest = max(float(a.get("round_trip_ms", 0.0)) for a in answers)
    return (
        f"{stack.layer_summary}; it answers a send + receive in every worker "
        f"(slowest {slowest:.1f} ms)"
    )


def _check_http(stack: Stack) -> None:
    options = stack.options
    host = f"{options.host}:{options.port}"
    path = options.ready_path
    status: int | None = None
    body = b""
    connection = http.client.HTTPConnection(
        options.host, options.port, timeout=10 * timeout_factor()
    )
    try:
        connection.request("GET", path, headers={"Accept": "text/html"})
        response = connection.getresponse()
        status, body = response.status, response.read()
    except OSError as exc:
        body = str(exc).encode()
    finally:
        connection.close()
    if status is not None and status < 500 and status != 400:
        return
    answer = f"HTTP {status}" if status is not None else f"no answer ({body.decode()})"
    found = _diagnose(stack, host, path)
    detail = "; ".join(found) if found else _first_text(body)
    advice = next((h for h in map(hint, [*found, detail]) if h), "")
    if status == 400 and not advice:
        advice = "Django answers 400 when the Host header is not in ALLOWED_HOSTS"
    raise ConfigError(
        f"the app does not serve: GET {path} through {_front(options.lb)} ({host}) "
        f"answered {answer}"
        + (f": {detail}" if detail else "")
        + (f" — {advice}" if advice else "")
        + " (--ready-path chooses the path)"
    )


def _check_websocket(stack: Stack, path: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    from websockets.typing import Origin

    options = stack.options
    origin = f"http://{options.host}:{options.port}"
    url = f"ws://{options.host}:{options.port}{path}"
    try:
        with connect(url, origin=Origin(origin), open_timeout=10 * timeout_factor()):
            return
    except InvalidStatus as exc:
        status = exc.response.status_code
        error = _last_worker_error(stack) if status >= 500 else ""
        advice = hint(error) or {
            403: f"an origin check refused Origin {origin}: add {options.host} to ALLOWED_HOSTS",
            404: "no websocket route matches this path",
        }.get(status, f"see {stack.layout.logs}/worker-*.log")
        raise ConfigError(
            f"the app does not serve websockets: the handshake on {path} answered HTTP {status}"
            + (f": {error}" if error else "")
            + f" — {advice} (--ready-ws-path chooses the path)"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"the app does not serve websockets: the handshake on {path} failed ({exc})"
        ) from None


def _diagnose(stack: Stack, host: str, path: str) -> list[str]:
    """Replay ``GET path`` with Django's test client in the workers' environment: what Django
    logged or raised (empty: nothing, or not a Django app)."""
    env = {**os.environ, **worker_environment(stack.options, stack.redis_url, False)}
    try:
        done = subprocess.run(
            [stack.options.python, "-c", _DIAGNOSE, host, path],
            env=env, capture_output=True, timeout=60 * timeout_factor(), check=False,
        )  # fmt: skip
        found = json.loads(done.stdout.decode().strip().splitlines()[-1])["found"]
    except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
        return []
    return [str(item) for item in found]


def _last_worker_error(stack: Stack) -> str:
    """The last exception line the workers logged (a traceback's last line), or ``""``."""
    found = ""
    for worker in range(stack.options.workers):
        try:
            lines = (stack.layout.logs / f"worker-{worker}.log").read_text(errors="replace")
        except OSError:
            continue
        for line in lines.splitlines():
            if _EXCEPTION_LINE.match(line.strip()):
                found = line.strip()
    return found[:300]


def _first_text(body: bytes) -> str:
    """The first line of text of an HTML or plain answer, shortened."""
    text = body.decode(errors="replace")
    for marker in ("<title>", "<h1>"):
        if marker in text:
            text = text.split(marker, 1)[1].split("<", 1)[0]
            break
    return " ".join(text.split())[:200]


def _front(lb: str) -> str:
    """What answers on ``--port``: with ``--lb direct`` the workers themselves."""
    return "the workers" if lb == "direct" else lb
