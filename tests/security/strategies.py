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
