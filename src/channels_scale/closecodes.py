"""Every websocket close code and error frame channels-scale sends, in one place.

docs/close-codes.md is the same table for people; keep them together.

=====  ==============================  ====================================================
code   name                            sent when
=====  ==============================  ====================================================
1000   NORMAL                          normal closure
1001   GOING_AWAY                      the worker is shutting down; reconnect
1008   POLICY_VIOLATION                a frame the endpoint refuses: malformed or too deep
                                       JSON, a lone surrogate, a binary frame on a JSON
                                       endpoint, a frame of the wrong shape, or a handler
                                       raised :class:`ProtocolViolation`
1009   MESSAGE_TOO_BIG                 a frame over the endpoint's maximum message size
1011   INTERNAL_ERROR                  a handler raised (our fault); logged with its traceback
1013   TRY_AGAIN_LATER                 slow client (its outgoing queue passed its byte bound,
                                       or the layer dropped messages for it), or Redis
                                       unreachable while joining a stream
4401   UNAUTHORIZED                    the endpoint needs a logged-in user or a valid token
4403   FORBIDDEN                       the user may not join this group (room)
4408   IDLE_TIMEOUT                    no frame from the client for the endpoint's idle timeout
4429   RATE_LIMITED                    too many messages (per connection or per user), or too
                                       many connections for this user
=====  ==============================  ====================================================

A handshake that is refused before it is accepted never becomes a websocket: a foreign browser
origin gets HTTP 403 (browsers report close code 1006) and a path that matches no route gets
HTTP 404 (:data:`HTTP_NOT_FOUND`).

Error frames (the connection stays open) are JSON objects ``{"type": "error", "code": <code>,
"detail": <text>, ...}`` with a code of :class:`ErrorCode`.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

#: the HTTP status of a websocket handshake whose path matches no route
HTTP_NOT_FOUND = 404


class CloseCode(IntEnum):
    """Close codes sent by channels-scale endpoints (see the module docstring)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    IDLE_TIMEOUT = 4408
    RATE_LIMITED = 4429


class ErrorCode(StrEnum):
    """``code`` of the error frames sent to a client; the connection stays open."""

    #: the chat: a message over the maximum number of characters (nothing stored)
    TEXT_TOO_LONG = "text_too_long"
    #: the chat: the message is stored but Redis could not be reached to publish it
    NOT_DELIVERED = "not_delivered"
    #: the user may not publish to this group (room): nothing stored, nothing sent
    FORBIDDEN = "forbidden"
