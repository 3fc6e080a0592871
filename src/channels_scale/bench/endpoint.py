"""The websocket endpoint the bench drives: path, frame shape, handshake headers (pure: no I/O).

By default the bench drives ``/ws/broadcast/<room>/`` (every stack it starts serves it) and sends
the bench frame itself (:mod:`channels_scale.bench.frames`), which that endpoint relays verbatim.
Any other endpoint that fans a client's frame out to a room can be measured too (``--url`` with
``--path``, ``--frame``, ``--origin``, ``--header``)::

    channels-scale bench fanout --url ws://127.0.0.1:8000 --path '/ws/chat/{room}/' \\
        --frame '{"message": "{payload}"}' --origin http://127.0.0.1:8000

With ``--frame``, ``{payload}`` is replaced by a token of letters, digits and ``-`` (so it needs
no escaping inside a JSON string, a form field or a URL) that carries the phase, the publisher, the
sequence number and the scheduled send time, padded with ``x`` so the frame sent is
:data:`~channels_scale.bench.frames.FRAME_SIZE` bytes when the template leaves room. A frame
received counts as a delivery when the token appears anywhere in it, so a server may wrap or
re-serialise the message (add a user name, a timestamp, spaces) and still be measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from channels_scale.bench.frames import FRAME_SIZE, FrameError, decode_frame, encode_frame
from channels_scale.bench.wire import DEFAULT_WIRE, wire_named

DEFAULT_PATH = "/ws/broadcast/{room}/"
ROOM = "{room}"
PAYLOAD = "{payload}"

_TOKEN = re.compile(rb"csb-(\d+)-(\d+)-(\d+)-(\d+)-")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)
_HANDSHAKE_HEADERS = {"connection", "upgrade", "host"} | {
    f"sec-websocket-{name}" for name in ("key", "version", "extensions", "accept")
}


@dataclass(frozen=True)
class Endpoint:
    """Where and what the bench sends (picklable: client processes get a copy).

    ``path`` has ``{room}`` where the room name goes; ``frame`` is ``None`` (send the bench frame
    as is) or a template with ``{payload}``; ``headers`` are sent with every handshake (``Origin``
    among them when ``--origin`` is given); ``wire`` what the stack speaks around the frame
    (:mod:`channels_scale.bench.wire`: the stack chooses it, e.g. ``socketio``).
    """

    path: str = DEFAULT_PATH
    frame: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    wire: str = DEFAULT_WIRE

    def url(self, base_url: str, room: str) -> str:
        """``ws://host:port`` + the path of ``room`` (on the ``socketio`` wire: Socket.IO's)."""
        return wire_named(self.wire).url(base_url, self.path.replace(ROOM, room), room)

    def encode(self, phase: int, publisher: int, seq: int, scheduled_us: int) -> bytes:
        """The frame a publisher sends for ``seq``."""
        if self.frame is None:
            return encode_frame(phase, publisher, seq, scheduled_us)
        token = f"csb-{phase}-{publisher}-{seq}-{scheduled_us}-"
        pad = FRAME_SIZE - len(self.frame.encode()) + len(PAYLOAD) - len(token)
        return self.frame.replace(PAYLOAD, token + "x" * max(pad, 0)).encode()

    def decode(self, data: bytes) -> tuple[int, int, int, int]:
        """``(phase, publisher, seq, scheduled_us)`` of a received frame.

        Raises:
            FrameError: the frame carries no bench payload (another message of the endpoint).
        """
        if self.frame is None:
            return decode_frame(data)
        match = _TOKEN.search(data)
        if match is None:
            raise FrameError(f"no bench payload in {data[:40]!r}")
        return int(match[1]), int(match[2]), int(match[3]), int(match[4])

    def redacted_headers(self) -> list[str]:
        """``Name:value`` of each header for the record, values hidden but for ``Origin``.

        Headers often carry credentials (``Cookie``, ``Authorization``): they stay out of the JSON
        and the command line the bench writes.
        """
        return [f"{k}:{v if k.lower() == 'origin' else '…'}" for k, v in self.headers]


def parse_path(text: str) -> str:
    """argparse type of ``--path``: starts with ``/``, holds ``{room}`` once.

    Raises:
        ValueError: with the one line that says why.
    """
    if not text.startswith("/"):
        raise ValueError(f"must start with /, like /ws/chat/{{room}}/, not {text!r}")
    if text.count(ROOM) != 1:
        raise ValueError(f"must hold {ROOM} once (where the room name goes), not {text!r}")
    if any(c.isspace() or c in "?#" for c in text):
        raise ValueError(f"must be a plain path (no spaces, ? or #): {text!r}")
    return text


def parse_frame(text: str) -> str:
    """argparse type of ``--frame``: a template holding ``{payload}`` once."""
    if text.count(PAYLOAD) != 1:
        raise ValueError(f'must hold {PAYLOAD} once, like \'{{"message": "{PAYLOAD}"}}\'')
    return text


def parse_header(text: str) -> tuple[str, str]:
    """argparse type of ``--header``: ``Name:value`` -> ``(name, value)``."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _HEADER_NAME.match(name):
        raise ValueError(f"must look like Name:value, e.g. 'Cookie:sessionid=abc', not {text!r}")
    if name.lower() in _HANDSHAKE_HEADERS:
        raise ValueError(f"{name} is set by the websocket handshake itself")
    if any(c in value for c in "\r\n"):
        raise ValueError(f"the value of {name} holds a line break")
    return name, value


def parse_origin(text: str) -> str:
    """argparse type of ``--origin``: ``http(s)://host[:port]``, as a browser sends it."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"must look like http://127.0.0.1:8000, not {text!r}")
    return f"{parts.scheme}://{parts.netloc}"


def handshake_hint(status: int, path: str) -> str:
    """The likely cause of a refused handshake, for the one-line error."""
    if status in (401, 403):
        return (
            "an Origin check (Channels' AllowedHostsOriginValidator refuses a missing or foreign "
            "Origin: pass --origin http://<a host in ALLOWED_HOSTS>) or authentication (pass "
            "--header Cookie:sessionid=... or --header Authorization:...)"
        )
    if status == 404:
        return f"no websocket route at {path}: check --path"
    if status >= 500:
        return (
            "the server failed the handshake; see its log (Channels logs 'No route found for "
            f"path' when {path} matches no route: check --path)"
        )
    if status in (301, 302, 307, 308):
        return "a redirect: point --url at the server itself (the bench speaks ws://, not wss://)"
    return "the endpoint does not accept this websocket handshake"
