"""Hypothesis strategies for the hostile-input run (:mod:`tests.security.hostile`).

Each strategy generates one kind of input; :func:`draw` takes many values of one in bulk, with a
fixed seed. Handshake strategies give ``(value, documented answer)`` pairs where the answer depends
on the value (an allowed ``Origin`` or ``Host`` is accepted).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

MAX_MESSAGE_BYTES = 65536
MAX_FRAGMENTS = 128  # channels_scale.wsprotocol.BoundedWebSocketProtocol.max_fragments
ROOM_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")

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


# --- the chat endpoint (/ws/chat/<room>/): application-level frames and handshakes -------------
# Each frame strategy gives ``(opcode name, payload)``; :func:`tests.security.chatprobes.answer`
# computes its documented answer from the payload, so a strategy may generate freely.

CHAT_MAX_TEXT = 2000  # chat.protocol.MAX_TEXT_CHARS
CHAT_MAX_DEPTH = 32  # channels_scale.consumers.AsyncJsonWebsocketConsumer.max_json_depth


def _message(text: str, extra: dict[str, Any], compact: bool, ascii_only: bool) -> str:
    content = {"type": "message", "text": text, **extra}
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(content, separators=separators, ensure_ascii=ascii_only)


_extra_keys = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in ("type", "text")), json_values, max_size=3
)
chat_messages = st.builds(_message, texts, _extra_keys, st.booleans(), st.booleans()).map(
    lambda payload: ("text", payload)
)
# Texts around and far over the 2,000-character limit; the longest with 4-byte characters pass
# the 64 KiB frame limit (close 1009 instead of the error frame).
chat_long = st.builds(
    lambda char, n, pad, ascii_only: _message(pad + char * n + pad, {}, True, ascii_only),
    st.characters(exclude_categories=("Cs",)),
    st.one_of(
        st.integers(CHAT_MAX_TEXT - 2, CHAT_MAX_TEXT + 2), st.integers(CHAT_MAX_TEXT, 20_000)
    ),
    st.sampled_from(["", " ", "\n\t "]),
    st.booleans(),
).map(lambda payload: ("text", payload))
chat_pings = st.sampled_from(
    [
        '{"type":"ping"}',
        '{"type": "ping"}',
        '{ "type" : "ping" }',
        '{"\\u0074ype":"ping"}',
        '\n{"type":"p\\u0069ng"}\t',
        '{"type":"ping","type":"ping"}',
        '{"type":"ping","x":1}',
        '{"type":"PING"}',
        '{"type":["ping"]}',
    ]
).map(lambda payload: ("text", payload))
# Wrongly typed and malformed JSON (the broadcast session's generator), and frames of the right
# type with a wrongly typed field.
chat_json = st.one_of(
    json_texts,
    json_values.map(lambda v: json.dumps({"type": "message", "text": v})),
    json_values.map(lambda v: json.dumps({"type": v, "text": "x"})),
    st.sampled_from(
        [
            '{"type":"message"}',
            '{"text":"x"}',
            '{"type":"message","text":null}',
            '{"type":"message","text":"a","text":5}',
            "NaN",
            "1" * 5000,
            "{}" * 3,
        ]
    ),
).map(lambda payload: ("text", payload))
# Deep nesting: bare, and inside a valid message (depth 33 and more is refused, 32 is not).
chat_nested = st.one_of(
    st.integers(1, 10_000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 40).map(lambda n: _message("deep", {"x": ("[" * n + "]" * n)}, True, True)),
    st.integers(1, 40).map(
        lambda n: '{"type":"message","text":"deep","x":' + '{"a":' * n + "1" + "}" * n + "}"
    ),
).map(lambda payload: ("text", payload))
# Lone surrogates: as a JSON escape (valid UTF-8, invalid Unicode: 1008), and raw (the frame is
# not UTF-8: 1007 from the protocol).
_surrogate = st.integers(0xD800, 0xDFFF)
chat_surrogates = st.one_of(
    st.tuples(texts, _surrogate).map(
        lambda t: ("text", json.dumps({"type": "message", "text": t[0] + chr(t[1])}))
    ),
    st.tuples(texts, _surrogate).map(
        lambda t: ("text", json.dumps({"type": "message", "text": "x", t[0] + chr(t[1]): 1}))
    ),
    st.tuples(texts, _surrogate).map(
        lambda t: (
            "raw",
            json.dumps({"type": "message", "text": t[0] + chr(t[1])}, ensure_ascii=False),
        )
    ),
)
chat_binary = st.one_of(
    st.binary(max_size=300),
    chat_messages.map(lambda item: item[1].encode()),
).map(lambda payload: ("binary", payload))
CHAT_FRAMES = {
    "chat_message": chat_messages,
    "chat_long": chat_long,
    "chat_ping": chat_pings,
    "chat_json": chat_json,
    "chat_nested": chat_nested,
    "chat_surrogate": chat_surrogates,
    "chat_binary": chat_binary,
}
#: extra pings a flooding connection sends past its burst of 20 in one write: at least 30, so
#: that the rate's refill (5/s) cannot cover them however slowly a busy worker reads
chat_floods = st.integers(30, 300)

# Handshakes with a token that does not open ``chat``: a description the test turns into a token
# (it knows SECRET_KEY and the users' ids), see :func:`tests.security.chatprobes.token_for`.
_not_chat = st.text(max_size=20).filter(lambda a: a != "chat")
bad_tokens = st.one_of(
    st.tuples(st.just("garbage"), st.text(max_size=200)),
    st.tuples(st.just("garbage"), st.integers(1025, 5000).map(lambda n: "a" * n)),
    st.tuples(st.just("tampered"), st.integers(0, 10**6), st.sampled_from("AZaz09-_:.")),
    st.tuples(st.just("truncated"), st.integers(1, 10**6)),
    st.tuples(st.just("expired"), st.integers(0, 10**8)),
    st.tuples(st.just("audience"), _not_chat),
    st.tuples(st.just("key"), st.text(min_size=1, max_size=60)),
    st.tuples(st.just("salt"), st.text(max_size=40)),
    st.tuples(st.just("unknown_user"), st.one_of(st.integers(10**6, 10**9), st.text(max_size=10))),
    st.just(("inactive",)),
    st.tuples(
        st.just("payload"),
        st.one_of(
            json_values.filter(lambda v: not isinstance(v, dict)),
            st.dictionaries(st.sampled_from("uaex"), json_values).map(
                lambda d: {**d, "e": str(d.get("e"))}
            ),
        ),
    ),
    st.tuples(st.just("param"), st.sampled_from(["tok", "Token", "token[]", "access_token"])),
    st.just(("none",)),
)
#: (user number, private room number) for a member of no such room
non_members = st.tuples(st.integers(0, 10**6), st.integers(0, 10**6))


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
