"""The hostile-input run: generated inputs, their documented answers, and the code that sends them.

Every input is a :class:`Probe`: a kind, what to send, and the answer docs/security.md documents
for it. Three shapes:

- **session items** (``text``, ``json``, ``fragmented``, ``binary``): many per connection to
  ``/ws/broadcast/<private room>/``; the answer is the echo (the room's broadcast, verbatim) or
  nothing (binary frames are ignored);
- **terminal frames** (``oversize``, ``invalid_utf8``, ``protocol``, ``fragment_flood``,
  ``ping_flood``): one connection each, answered by a close code;
- **handshakes** (``origin``, ``host``, ``path``, ``query``): answered by an HTTP status.

The inputs come from the hypothesis strategies of :mod:`tests.security.strategies`, drawn in bulk
with a fixed seed, so a failure names an input that the next run generates again.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.security.rawws import BINARY, CLOSE, CONT, PING, TEXT, RawSocket, frame

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
