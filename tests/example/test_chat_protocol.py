"""The chat's frame checks (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from chat.protocol import MAX_TEXT_CHARS, MalformedFrame, message_text, text_too_long, utf8_length


def test_message_text_strips() -> None:
    assert message_text({"type": "message", "text": "  hi \n"}) == "hi"
    assert message_text({"type": "message", "text": "   "}) == ""


@pytest.mark.parametrize(
    "content",
    [
        None,
        [],
        "message",
        {"text": "hi"},
        {"type": "other", "text": "hi"},
        {"type": "message"},
        {"type": "message", "text": 3},
        {"type": "message", "text": ["hi"]},
    ],
)
def test_message_text_refuses_wrong_shapes(content: Any) -> None:
    with pytest.raises(MalformedFrame):
        message_text(content)


def test_utf8_length_counts_bytes() -> None:
    assert utf8_length("abc") == 3
    assert utf8_length("\u00e9") == 2
    assert utf8_length("\U0001f600") == 4


def test_text_too_long_frame() -> None:
    frame = text_too_long()
    assert frame["type"] == "error"
    assert frame["max_chars"] == MAX_TEXT_CHARS
