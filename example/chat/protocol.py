"""The chat's websocket protocol: frame shapes and the checks on client frames (pure, no I/O).

Client → server::

    {"type": "message", "text": "hello"}

Server → client::

    {"type": "message", "id": 12, "user": "demo", "text": "hello", "created": "2025-...+00:00"}
    {"type": "error", "code": "text_too_long", "detail": "...", "max_chars": 2000}
    {"type": "error", "code": "not_delivered" | "forbidden", "detail": "..."}

Error codes are :class:`channels_scale.closecodes.ErrorCode` (docs/close-codes.md).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from channels_scale.closecodes import ErrorCode

# A message longer than this (after stripping surrounding whitespace) is refused with an error
# frame; the connection stays open.
MAX_TEXT_CHARS = 2000


class MessageFrame(TypedDict):
    """A stored message, as every client in the room receives it."""

    type: Literal["message"]
    id: int
    user: str
    text: str
    created: str


class ErrorFrame(TypedDict):
    """A refused client frame; the connection stays open."""

    type: Literal["error"]
    code: str
    detail: str
    max_chars: NotRequired[int]
    id: NotRequired[int]


class MalformedFrame(ValueError):
    """A client frame that is not ``{"type": "message", "text": <string>}``."""


def message_text(content: Any) -> str:
    """Return the text of a decoded client frame, stripped of surrounding whitespace.

    Raises:
        MalformedFrame: ``content`` is not ``{"type": "message", "text": <string>}``.
    """
    if not isinstance(content, dict) or content.get("type") != "message":
        raise MalformedFrame('expected {"type": "message", "text": ...}')
    text = content.get("text")
    if not isinstance(text, str):
        raise MalformedFrame('"text" must be a string')
    return text.strip()


def forbidden() -> ErrorFrame:
    """The error frame sent back when the sender may no longer post in the room."""
    return {
        "type": "error",
        "code": ErrorCode.FORBIDDEN,
        "detail": "You are not a member of this room.",
    }


def not_delivered(message_id: int) -> ErrorFrame:
    """The error frame sent back when a stored message could not be published (Redis down)."""
    return {
        "type": "error",
        "code": ErrorCode.NOT_DELIVERED,
        "detail": "Saved, but the room could not be reached; others will see it on reload.",
        "id": message_id,
    }


def text_too_long(max_chars: int = MAX_TEXT_CHARS) -> ErrorFrame:
    """The error frame sent back for a message over ``max_chars`` characters."""
    return {
        "type": "error",
        "code": ErrorCode.TEXT_TOO_LONG,
        "detail": f"Messages are limited to {max_chars} characters.",
        "max_chars": max_chars,
    }


def utf8_length(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes, without encoding when the answer is obvious."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))
