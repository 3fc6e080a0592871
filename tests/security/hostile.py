"""The hostile-input run: generated inputs, their documented answers, and the code that sends them.

Every input is a :class:`Probe`: a kind, what to send, and the answer docs/security.md documents
for it. Three shapes:

- **session items** (``text``, ``json``, ``fragmented``, ``binary``): many per connection to
  ``/ws/broadcast/<private room>/``; the answer is the echo (the room's broadcast, verbatim) or
  nothing (binary frames are ignored);
- **terminal frames** (``oversize``, ``invalid_utf8``, ``protocol``, ``fragment_flood``,
  ``ping_flood``): one connection each, answered by a close code;
- **handshakes** (``origin``, ``host``, ``path``, ``query``): answered by an HTTP status.

The inputs come from hypothesis strategies, drawn in bulk (:func:`draw`) with a fixed seed, so a
failure names an input that the next run generates again.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.security.rawws import BINARY, CLOSE, CONT, PING, TEXT, RawSocket, frame

MAX_MESSAGE_BYTES = 65536
MAX_FRAGMENTS = 128  # channels_scale.wsprotocol.BoundedWebSocketProtocol.max_fragments
ROOM_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")

ECHO, IGNORED = "echo", "ignored"
#: A server that fails a connection closes TCP at once (RFC 6455 7.1.7); if the client's flood is
#: still unread then, the kernel sends a reset, which can discard the close frame on its way (the
#: client sees a reset or a bare end of stream). The worker's counters (``/healthz``) show the
#: close happened either way.
RESET = "dropped without close frame"
UNMATCHED_PATH = "unmatched path"


@dataclass
class Probe:
    """One generated input: ``data`` is what to send, ``expected`` its documented answer."""

    kind: str
    data: Any
    expected: str
    observed: str | None = None
    #: Also documented: a flood's close frame can be overtaken by a TCP reset (see RESET).
    also: tuple[str, ...] = ()


# --- strategies ------------------------------------------------------------------------------

# Any text a client can send (no surrogates: those cannot be UTF-8, see INVALID_UTF8).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
json_texts = st.one_of(
    json_values.map(json.dumps),
    # Wrongly typed and malformed JSON.
    st.text(alphabet='{}[]":,0123456789.eE+-truefalsn \\u', max_size=200),
    st.sampled_from(['{"type": "ping"}', '{"type" : "ping"}', "null", "[]", '{"type": 1}', '"']),
    # Deep nesting (the chat's RecursionError shape), within the size limit.
    st.integers(1, 10_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 5_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    # A lone surrogate as a JSON escape: valid UTF-8 text, invalid Unicode once decoded.
    texts.map(lambda s: json.dumps({"message": s + "\ud800"})),
)
session_items = st.one_of(
    st.tuples(st.just("text"), texts),
    st.tuples(st.just("json"), json_texts),
    st.tuples(
        st.just("fragmented"),
        texts,
        st.lists(st.integers(0, 10**6), max_size=MAX_FRAGMENTS - 1),
        st.booleans(),
    ),
    st.tuples(st.just("binary"), st.binary(max_size=500)),
)

# UTF-8 that is not: encoded surrogates (lone or paired), overlongs, stray bytes.
INVALID_UTF8 = [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xff", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"]
invalid_utf8 = st.tuples(
    texts,
    st.one_of(
        st.sampled_from(INVALID_UTF8),
        st.characters(categories=("Cs",)).map(lambda c: c.encode("utf-8", "surrogatepass")),
    ),
    texts,
    st.booleans(),
)
PROTOCOL_VIOLATIONS = [
    "reserved opcode",
    "rsv bits",
    "continuation first",
    "data inside fragmented",
    "fragmented control",
    "long control",
    "bad close code",
    "one-byte close",
    "unmasked",
]
protocol = st.tuples(st.sampled_from(PROTOCOL_VIOLATIONS), st.integers(0, 2**16), st.binary())
floods = st.tuples(st.integers(MAX_FRAGMENTS + 1, 2_000), st.integers(0, 2))
ping_floods = st.integers(40, 2_000)
oversize = st.integers(MAX_MESSAGE_BYTES + 1, 10**7)

hostname = st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(test|example|com|net)", fullmatch=True)
port_suffix = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60)
ALLOWED_HOST_PREFIXES = ("localhost", "127.0.0.1", "[::1]")


def _foreign(value: str) -> bool:
    return not value.lower().lstrip().startswith(ALLOWED_HOST_PREFIXES)


origins = st.one_of(
    st.tuples(st.sampled_from(["http://", "https://"]), hostname, port_suffix).map(
        lambda t: ("".join(t), "HTTP 403")
    ),
    printable.filter(lambda s: not s.lower().startswith("http")).map(lambda s: (s, "HTTP 403")),
    st.sampled_from(["null", "file://", "http://", "https://[::1"]).map(lambda s: (s, "HTTP 403")),
    st.tuples(st.sampled_from(ALLOWED_HOST_PREFIXES), port_suffix).map(
        lambda t: ("http://" + "".join(t), "HTTP 101")
    ),
)
hosts = st.one_of(
    st.tuples(hostname, port_suffix).map(lambda t: ("".join(t), "HTTP 400")),
    printable.filter(_foreign).map(lambda s: (s, "HTTP 400")),
    st.tuples(st.sampled_from(ALLOWED_HOST_PREFIXES), port_suffix).map(
        lambda t: ("".join(t), "HTTP 101")
    ),
)
PATH_CHARS = "abcXYZ019_.-~!$&'()*+,;=:@/%"
unmatched_rooms = st.one_of(
    st.text(st.sampled_from(PATH_CHARS), max_size=30),
    st.integers(81, 1000).map(lambda n: "r" * n),
    st.sampled_from(["", "%2F", "a%2Fb", "%00", "%ff", "a/b"]),
).filter(lambda room: not ROOM_RE.fullmatch(room))
paths = st.one_of(
    unmatched_rooms.map(lambda room: f"/ws/broadcast/{room}/"),
    st.text(st.sampled_from(PATH_CHARS), max_size=40).map(lambda p: "/" + p),
    st.sampled_from(["/ws/", "/ws/broadcast/", "/ws/chat/", "/ws/nothing/x/", "/ws/chat/!/"]),
).filter(lambda p: not re.fullmatch(r"/ws/(broadcast|chat)/[A-Za-z0-9_.-]{1,80}/", unquote(p)))
QUERY_CHARS = "abcxyz0123456789=&+-._~!$'()*,;:@/?%"
queries = st.one_of(
    st.text(st.sampled_from(QUERY_CHARS), max_size=80),
    st.binary(max_size=20).map(lambda b: "offset=" + "".join(f"%{x:02X}" for x in b)),
    st.sampled_from(["offset=%C2%B2", "offset=-1", "offset=1e400", "epoch=&offset=", "a=%ff%fe"]),
)


def draw(strategy: st.SearchStrategy[Any], count: int, run_seed: int, batch: int = 20) -> list[Any]:
    """``count`` values of ``strategy``, reproducibly.

    Hypothesis costs ~2 ms per example, so each example is a list of ``batch`` values (~6x
    cheaper per value); its examples are drawn until ``count`` values are collected.
    """
    drawn: list[Any] = []

    @seed(run_seed)
    @settings(
        max_examples=count // batch + 10,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(strategy, min_size=batch, max_size=batch))
    def collect(values: list[Any]) -> None:
        if len(drawn) < count:
            drawn.extend(values[: count - len(drawn)])

    collect()
    assert len(drawn) == count, f"hypothesis gave {len(drawn)} of {count} inputs"
    return drawn


# --- oracles: the documented answer of each input --------------------------------------------


def session_probe(item: tuple[Any, ...]) -> Probe:
    kind = item[0]
    return Probe(kind, item, IGNORED if kind == "binary" else ECHO)


def terminal_probes(
    oversized: list[int],
    invalid: list[tuple[str, bytes, str, bool]],
    violations: list[tuple[str, int, bytes]],
    fragment_floods: list[tuple[int, int]],
    pings: list[int],
) -> list[Probe]:
    probes = [Probe("oversize", n, "close 1009", also=(RESET,)) for n in oversized]
    probes += [Probe("invalid_utf8", i, "close 1007") for i in invalid]
    probes += [Probe("protocol", v, "close 1002") for v in violations]
    probes += [Probe("fragment_flood", f, "close 1009", also=(RESET,)) for f in fragment_floods]
    probes += [Probe("ping_flood", n, "close 1008", also=(RESET,)) for n in pings]
    return probes


# --- frames -----------------------------------------------------------------------------------


def session_frames(item: tuple[Any, ...]) -> tuple[bytes, str | None]:
    """The bytes of one session item and the echo it should produce (None: no echo)."""
    kind = item[0]
    if kind in ("text", "json"):
        return frame(TEXT, item[1].encode()), item[1]
    if kind == "binary":
        return frame(BINARY, item[1]), None
    _, text, cuts, with_ping = item
    data = text.encode()
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = bytearray()
    for index, piece in enumerate(pieces):
        opcode = TEXT if index == 0 else CONT
        out += frame(opcode, piece, fin=index == len(pieces) - 1)
        if with_ping and index == 0 and len(pieces) > 1:
            out += frame(PING, b"between fragments")
    return bytes(out), text


def unmasked(opcode: int, payload: bytes) -> bytes:
    return struct.pack("!BB", 0x80 | opcode, len(payload)) + payload


def terminal_frames(probe: Probe) -> bytes:
    """What one terminal probe sends after the handshake."""
    data = probe.data
    if probe.kind == "oversize":
        # The header announces the length and the server refuses on it. Only a little of the
        # payload follows: bytes still unread when the worker closes would turn its FIN into a
        # RST, which can overtake the close frame on its way back through nginx.
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, data) + b"mask"
        return header + b"x" * 64
    if probe.kind == "invalid_utf8":
        prefix, bad, suffix, fragmented = data
        payload = prefix.encode() + bad + suffix.encode()
        if fragmented and len(payload) > 1:
            half = len(payload) // 2
            return frame(TEXT, payload[:half], fin=False) + frame(CONT, payload[half:])
        return frame(TEXT, payload)
    if probe.kind == "protocol":
        return violation(*data)
    if probe.kind == "fragment_flood":
        count, size = data
        return frame(TEXT, b"x", fin=False) + frame(CONT, b"y" * size, fin=False) * count
    if probe.kind == "ping_flood":
        return frame(PING, b"p") * data
    raise ValueError(probe.kind)


def violation(name: str, number: int, payload: bytes) -> bytes:
    """One frame sequence breaking RFC 6455 in the named way (the server must answer 1002)."""
    short = payload[:100]
    if name == "reserved opcode":
        return frame([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF][number % 10], short)
    if name == "rsv bits":
        return frame(TEXT, b"x", rsv=1 + number % 7)
    if name == "continuation first":
        return frame(CONT, short, fin=number % 2 == 0)
    if name == "data inside fragmented":
        return frame(TEXT, b"a", fin=False) + frame([TEXT, BINARY][number % 2], short)
    if name == "fragmented control":
        return frame([PING, CLOSE][number % 2], b"", fin=False)
    if name == "long control":
        return frame(PING, b"p" * (126 + number % 1000))
    if name == "bad close code":
        code = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000][number % 9]
        return frame(CLOSE, struct.pack("!H", code))
    if name == "one-byte close":
        return frame(CLOSE, b"\x03")
    if name == "unmasked":
        return unmasked(TEXT, short)
    raise ValueError(name)


# --- senders ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """Answers seen, by kind: ``{kind: {answer: count}}``, and the first few mismatches."""

    answers: dict[str, dict[str, int]] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    inputs: int = 0

    def add(self, probe: Probe) -> None:
        self.inputs += 1
        seen = self.answers.setdefault(probe.kind, {})
        answer = probe.observed or "no answer"
        seen[answer] = seen.get(answer, 0) + 1
        documented = answer == probe.expected or answer in probe.also
        if not documented and probe.expected != UNMATCHED_PATH and len(self.mismatches) < 20:
            self.mismatches.append(f"{probe.kind} {probe.data!r:.200}: {answer}")


async def run_session(port: int, room: str, probes: list[Probe], within: float) -> None:
    """Send every item on one connection, reading echoes meanwhile; mark each item's answer."""
    sock = await RawSocket.open(port, f"/ws/broadcast/{room}/")
    try:
        if sock.answer.status != 101:
            for probe in probes:
                probe.observed = f"HTTP {sock.answer.status}"
            return
        encoded = [session_frames(p.data) for p in probes]
        expected = [echo for _, echo in encoded if echo is not None]
        reader = asyncio.create_task(sock.read_until_closed(within, texts=len(expected)))
        for data, _ in encoded:
            if not await sock.send(data):
                break
        answer = await reader
        received = [t.decode("utf-8", "replace") for t in answer.texts]
        _mark_session(probes, encoded, received, answer.close_code)
    finally:
        await sock.close()


def _mark_session(
    probes: list[Probe],
    encoded: list[tuple[bytes, str | None]],
    received: list[str],
    close_code: int | None,
) -> None:
    """Echoes arrive in order: item i's echo is the next one received; binary items get none."""
    position = 0
    for probe, (_, echo) in zip(probes, encoded, strict=True):
        if echo is None:
            # Ignored means: no frame of its own came back (the next echo is the next text's).
            probe.observed = IGNORED
            continue
        if position < len(received) and received[position] == echo:
            probe.observed = ECHO
        elif position < len(received):
            probe.observed = "wrong echo"
        else:
            probe.observed = f"close {close_code}" if close_code else "no answer"
        position += 1
    if len(received) > position:
        probes[-1].observed = "extra frames"


async def run_terminal(port: int, probe: Probe, within: float) -> None:
    sock = await RawSocket.open(port, "/ws/broadcast/terminal/")
    try:
        if sock.answer.status != 101:
            probe.observed = f"HTTP {sock.answer.status}"
            return
        await sock.send(terminal_frames(probe))
        answer = await sock.read_until_closed(within)
        if answer.close_code:
            probe.observed = f"close {answer.close_code}"
        else:
            probe.observed = RESET if answer.dropped else "no answer"
    finally:
        await sock.close()


async def run_handshake(port: int, probe: Probe, within: float) -> None:
    """Open with the probe's Origin, Host, path or query; the answer is the HTTP status."""
    path, host, headers = "/ws/broadcast/handshake/", None, None
    if probe.kind == "origin":
        headers = [("Origin", probe.data)]
    elif probe.kind == "host":
        host = probe.data
    elif probe.kind == "path":
        path = probe.data
    elif probe.kind == "query":
        path = f"{path}?{probe.data}"
    sock = await RawSocket.open(port, path, host=host, headers=headers)
    try:
        probe.observed = f"HTTP {sock.answer.status}" if sock.answer.status else "no answer"
        if sock.answer.status == 101:
            await sock.send(frame(CLOSE, struct.pack("!H", 1000)))
            await sock.read_until_closed(within)
    finally:
        await sock.close()


async def bounded(jobs: list[Callable[[], Any]], concurrency: int) -> None:
    """Run ``jobs`` (coroutine factories), at most ``concurrency`` at a time."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
