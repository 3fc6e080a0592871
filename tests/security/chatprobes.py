"""The hostile-input run at the chat endpoint: application-level inputs, their answers, senders.

``/ws/chat/<room>/`` parses JSON and needs a user, so its inputs are of three shapes:

- **frames** (kinds ``chat_*`` of :data:`tests.security.strategies.CHAT_FRAMES`), sent by a user
  with a valid ``?token=`` to a room of its own (created on connect, so the only frames it sees
  are its own). :func:`answer` is the documented answer of each (docs/close-codes.md): the
  message stored and echoed to the room, ``pong``, ignored, the ``text_too_long`` error frame
  (the connection stays open), or a close code (1007, 1008, 1009). Each connection carries up
  to :data:`PER_CONNECTION` items that keep it open, then at most one that closes it;
- **floods** (``chat_flood``): the burst of 20 pings and more in one write: close 4429;
- **handshakes** (``chat_token``: missing, malformed, tampered, expired, foreign-audience,
  wrongly signed tokens, unknown or inactive users: close 4401; ``chat_member``: a valid user
  in an existing room of which it is not a member: close 4403). Both are accepted (101) first.

Rates: a chat connection may send 20 frames at once (then 5/s), and a user 120 a minute across
workers (a worker leases 10 at a time, so up to 20 fewer): :func:`plan` keeps every connection
within its burst and every user within :data:`USER_BUDGET`.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.core import signing
from django.test import override_settings

from channels_scale.auth import TOKEN_SALT, issue_token
from tests.security.hostile import ECHO, IGNORED, RESET, Probe
from tests.security.rawws import BINARY, CLOSE, TEXT, RawSocket, frame
from tests.security.strategies import CHAT_MAX_DEPTH, CHAT_MAX_TEXT, MAX_MESSAGE_BYTES

PONG, TOO_LONG = "pong", "error text_too_long"
#: Items that keep a connection open, per connection (its burst is 20 frames).
PER_CONNECTION = 16
#: Frames per user in the whole run (the chat allows 120 a minute, minus up to 2 leases of 10).
USER_BUDGET = 80
CHAT_BURST = 20  # chat.consumers.ChatConsumer.message_burst
PING_FRAME = b'{"type":"ping"}'
CONTROL = frozenset({"welcome", "presence", "presence.state", "reload"})


# --- oracles ----------------------------------------------------------------------------------


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(item) for item in value)
    return False


def payload_bytes(item: tuple[str, str | bytes]) -> bytes:
    payload = item[1]
    return payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")


def answer(item: tuple[str, str | bytes]) -> str:
    """The documented answer of the chat to one frame (docs/close-codes.md, chat.consumers)."""
    data = payload_bytes(item)
    if len(data) > MAX_MESSAGE_BYTES:
        return "close 1009"
    if item[0] == "binary":
        return "close 1008"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "close 1007"
    try:
        content = json.loads(text)
    except (ValueError, RecursionError):
        return "close 1008"
    if _depth(content) > CHAT_MAX_DEPTH or _lone_surrogate(content):
        return "close 1008"
    if content == {"type": "ping"}:
        return PONG
    if not isinstance(content, dict) or content.get("type") != "message":
        return "close 1008"
    if not isinstance(content.get("text"), str):
        return "close 1008"
    stripped = content["text"].strip()
    if not stripped:
        return IGNORED
    return TOO_LONG if len(stripped) > CHAT_MAX_TEXT else ECHO


def frame_probe(kind: str, item: tuple[str, str | bytes]) -> Probe:
    expected = answer(item)
    also = (RESET,) if expected == "close 1009" else ()
    return Probe(kind, item, expected, also=also)


def closes(probe: Probe) -> bool:
    return probe.expected.startswith("close ")


# --- tokens -----------------------------------------------------------------------------------


@dataclass
class Tokens:
    """Makes tokens with the stack's ``SECRET_KEY`` for the users the test created."""

    secret: str
    ids: dict[str, int]

    def valid(self, username: str) -> str:
        """A token from the project's own :func:`issue_token`, for the audience ``chat``."""
        with override_settings(SECRET_KEY=self.secret):
            return issue_token(self.ids[username], "chat", ttl=600)

    def sign(self, payload: Any, key: str | None = None, salt: str = TOKEN_SALT) -> str:
        return signing.dumps(payload, key=key or self.secret, salt=salt, compress=False)

    def bad_query(self, description: tuple[Any, ...]) -> str:
        """The query string of a handshake whose token must not open ``chat`` (close 4401)."""
        kind, *args = description
        valid = self.valid("h0")
        pk, soon = self.ids["h0"], int(time.time()) + 600
        if kind == "none":
            return ""
        if kind == "param":
            return f"{args[0]}={quote(valid, safe='')}"
        if kind == "garbage":
            token = args[0]
        elif kind == "tampered":
            at, char = args[0] % len(valid), args[1]
            char = char if valid[at] != char else ("A" if char != "A" else "B")
            token = valid[:at] + char + valid[at + 1 :]
        elif kind == "truncated":
            token = valid[: args[0] % len(valid)]
        elif kind == "expired":
            token = self.sign({"u": pk, "a": "chat", "e": int(time.time()) - args[0]})
        elif kind == "audience":
            token = self.sign({"u": pk, "a": args[0], "e": soon})
        elif kind == "key":
            token = self.sign({"u": pk, "a": "chat", "e": soon}, key="wrong:" + args[0])
        elif kind == "salt":
            assert args[0] != TOKEN_SALT
            token = self.sign({"u": pk, "a": "chat", "e": soon}, salt=args[0])
        elif kind == "unknown_user":
            assert args[0] not in self.ids.values()
            token = self.sign({"u": args[0], "a": "chat", "e": soon})
        elif kind == "inactive":
            token = self.sign({"u": self.ids["inactive"], "a": "chat", "e": soon})
        elif kind == "payload":
            token = self.sign(args[0])
        else:
            raise ValueError(kind)
        return "token=" + quote(token, safe="")


# --- the plan: frames packed into connections, connections given to users ---------------------


@dataclass
class ChatConnection:
    user: str
    probes: list[Probe]


def plan(probes: list[Probe], users: list[str]) -> list[ChatConnection]:
    """Pack frames into connections (open-keeping ones first, a closing one last) and spread
    the connections over ``users`` so that nobody passes a rate limit."""
    staying = [p for p in probes if not closes(p)]
    closing = [p for p in probes if closes(p)]
    count = max(len(closing), -(-len(staying) // PER_CONNECTION))
    packed: list[list[Probe]] = [[] for _ in range(count)]
    for index, probe in enumerate(staying):
        packed[index % count].append(probe)
    for index, probe in enumerate(closing):
        packed[index].append(probe)
    connections = [ChatConnection(users[i % len(users)], p) for i, p in enumerate(packed)]
    spent: dict[str, int] = {}
    for connection in connections:
        spent[connection.user] = spent.get(connection.user, 0) + len(connection.probes)
    assert max(spent.values()) <= USER_BUDGET, f"add users: {max(spent.values())} frames each"
    return connections


# --- senders ----------------------------------------------------------------------------------


def wire(probe: Probe) -> bytes:
    opcode = BINARY if probe.data[0] == "binary" else TEXT
    return frame(opcode, payload_bytes(probe.data))


def _server_frames(texts: list[bytes]) -> tuple[list[dict[str, Any]], list[str]]:
    """(echoed messages, direct answers) among the server's text frames, control frames out."""
    echoes: list[dict[str, Any]] = []
    direct: list[str] = []
    for raw in texts:
        content = json.loads(raw)
        kind = content.get("type")
        if isinstance(content.get("data"), dict):
            echoes.append(content["data"])
        elif kind == "pong":
            direct.append(PONG)
        elif kind == "error":
            direct.append(f"error {content.get('code')}")
        elif kind not in CONTROL:
            direct.append(f"unexpected {raw[:60]!r}")
    return echoes, direct


async def _read_answers(sock: RawSocket, echoes: int, direct: int, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while sock.answer.close_code is None and not sock.answer.dropped:
        got_echoes, got_direct = _server_frames(sock.answer.texts)
        remaining = deadline - loop.time()
        if (len(got_echoes) >= echoes and len(got_direct) >= direct) or remaining <= 0:
            return
        await sock.read_until_closed(remaining, texts=len(sock.answer.texts) + 1)


def _echo_text(probe: Probe) -> str:
    return str(json.loads(payload_bytes(probe.data))["text"]).strip()


async def run_chat(
    port: int, connection: ChatConnection, room: str, tokens: Tokens, within: float
) -> None:
    """One connection: its open-keeping items in one write, their answers (echoes through the
    room, pongs and error frames straight back), then the closing item or a normal close."""
    query = "token=" + quote(tokens.valid(connection.user), safe="")
    sock = await RawSocket.open(port, f"/ws/chat/{room}/?{query}")
    try:
        if sock.answer.status != 101:
            for probe in connection.probes:
                probe.observed = f"HTTP {sock.answer.status}"
            return
        staying = [p for p in connection.probes if not closes(p)]
        closing = [p for p in connection.probes if closes(p)]
        last = closing[-1] if closing else None
        await sock.send(b"".join(wire(p) for p in staying))
        echoes = sum(p.expected == ECHO for p in staying)
        direct = sum(p.expected in (PONG, TOO_LONG) for p in staying)
        await _read_answers(sock, echoes, direct, within)
        got_echoes, got_direct = _server_frames(sock.answer.texts)
        _mark(staying, got_echoes, got_direct, connection.user, sock.answer.close_code)
        seen = len(got_echoes) + len(got_direct)
        if last is not None:
            await sock.send(wire(last))
        else:
            await sock.send(frame(CLOSE, struct.pack("!H", 1000)))
        final = await sock.read_until_closed(within)
        if last is not None:
            if final.close_code:
                last.observed = f"close {final.close_code}"
            else:
                last.observed = RESET if final.dropped else "no answer"
        later_echoes, later_direct = _server_frames(final.texts)
        if len(later_echoes) + len(later_direct) > seen and staying:
            # An ignored item answered after all: something came that no item accounts for.
            staying[-1].observed = "extra frames"
    finally:
        await sock.close()


def _mark(
    probes: list[Probe],
    echoes: list[dict[str, Any]],
    direct: list[str],
    user: str,
    close_code: int | None,
) -> None:
    """Echoes arrive in order among themselves, direct answers too (not with each other)."""
    missing = f"close {close_code}" if close_code else "no answer"
    next_echo = next_direct = 0
    for probe in probes:
        if probe.expected == ECHO:
            if next_echo < len(echoes):
                data = echoes[next_echo]
                good = data.get("text") == _echo_text(probe) and data.get("user") == user
                probe.observed = ECHO if good and isinstance(data.get("id"), int) else "wrong echo"
            else:
                probe.observed = missing
            next_echo += 1
        elif probe.expected in (PONG, TOO_LONG):
            probe.observed = direct[next_direct] if next_direct < len(direct) else missing
            next_direct += 1
        else:
            probe.observed = IGNORED
    if len(echoes) > next_echo or len(direct) > next_direct:
        probes[-1].observed = "extra frames"


async def run_flood(
    port: int, probe: Probe, user: str, room: str, tokens: Tokens, within: float
) -> None:
    """The burst and ``probe.data`` more pings in one write: closed 4429 before all are answered."""
    query = "token=" + quote(tokens.valid(user), safe="")
    sock = await RawSocket.open(port, f"/ws/chat/{room}/?{query}")
    try:
        if sock.answer.status != 101:
            probe.observed = f"HTTP {sock.answer.status}"
            return
        sent = CHAT_BURST + probe.data
        await sock.send(frame(TEXT, PING_FRAME) * sent)
        answer_ = await sock.read_until_closed(within)
        _, direct = _server_frames(answer_.texts)
        if answer_.close_code:
            probe.observed = f"close {answer_.close_code}"
            if direct.count(PONG) >= sent:
                probe.observed += " after every pong"
        else:
            probe.observed = RESET if answer_.dropped else "no answer"
    finally:
        await sock.close()


async def run_handshake(port: int, probe: Probe, path: str, within: float) -> None:
    """A handshake the chat accepts and then closes: the answer is the close code."""
    sock = await RawSocket.open(port, path)
    try:
        if sock.answer.status != 101:
            probe.observed = f"HTTP {sock.answer.status}" if sock.answer.status else "no answer"
            return
        closed = await sock.read_until_closed(within)
        probe.observed = f"close {closed.close_code}" if closed.close_code else "no answer"
    finally:
        await sock.close()
