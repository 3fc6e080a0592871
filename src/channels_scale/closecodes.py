"""Every websocket close code and error frame channels-scale sends, in one place.

docs/close-codes.md is the same table for people; keep them together.

=====  ==============================  ====================================================
code   name                            sent when
=====  ==============================  ====================================================
1000   NORMAL                          normal closure
1001   GOING_AWAY                      the worker is shutting down; reconnect
1002   PROTOCOL_ERROR                  a frame breaking RFC 6455 (sent by the websockets
                                       protocol under uvicorn)
1007   INVALID_DATA                    a text frame that is not UTF-8 (the protocol)
1008   POLICY_VIOLATION                a frame the endpoint refuses: malformed or too deep
                                       JSON, a lone surrogate, a binary frame on a JSON
                                       endpoint, a frame of the wrong shape, or a handler
                                       raised :class:`ProtocolViolation`; more pings/pongs
                                       than the worker's budget ("too many control frames",
                                       channels_scale.wsprotocol)
1009   MESSAGE_TOO_BIG                 a frame over the endpoint's maximum message size; a
                                       message of more than 128 fragments ("too many
                                       fragments", channels_scale.wsprotocol)
1011   INTERNAL_ERROR                  a handler raised (our fault); logged with its traceback
1012   SERVICE_RESTART                 the worker is restarting (``channels-scale restart``,
                                       ``/drainz``, uvicorn's shutdown): reconnect and resume
1013   TRY_AGAIN_LATER                 slow client (its outgoing queue passed its byte bound,
                                       or the layer dropped messages for it), or Redis
                                       unreachable while joining a stream
4401   UNAUTHORIZED                    the endpoint needs a logged-in user or a valid token
4403   FORBIDDEN                       the user may not join this group (room)
4408   IDLE_TIMEOUT                    no frame from the client for the endpoint's idle timeout
4429   RATE_LIMITED                    too many messages (per connection or per user), or too
                                       many connections for this user
=====  ==============================  ====================================================

A handshake that is refused before it is accepted never becomes a websocket: a ``Host`` outside
``ALLOWED_HOSTS`` gets HTTP 400 (:data:`HTTP_BAD_HOST`), a foreign browser origin HTTP 403
(:data:`HTTP_FORBIDDEN_ORIGIN`; browsers report close code 1006) and a path that matches no
route HTTP 404 (:data:`HTTP_NOT_FOUND`).

Error frames (the connection stays open) are JSON objects ``{"type": "error", "code": <code>,
"detail": <text>, ...}`` with a code of :class:`ErrorCode`.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

#: the HTTP status of a websocket handshake whose path matches no route
HTTP_NOT_FOUND = 404
#: the HTTP status of a websocket handshake whose ``Host`` is outside ``ALLOWED_HOSTS``
HTTP_BAD_HOST = 400
#: the HTTP status of a websocket handshake from a foreign browser ``Origin``
HTTP_FORBIDDEN_ORIGIN = 403


class CloseCode(IntEnum):
    """Close codes sent by channels-scale endpoints (see the module docstring)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    IDLE_TIMEOUT = 4408
    RATE_LIMITED = 4429


class ErrorCode(StrEnum):
    """``code`` of the error frames sent to a client; the connection stays open."""

    #: the chat: a message over the maximum number of characters (nothing stored)
    TEXT_TOO_LONG = "text_too_long"
    #: the chat: the message is stored but Redis could not be reached to publish it; the
    #: broadcast endpoint: Redis stayed unreachable for ``send_timeout``, the frame is dropped
    NOT_DELIVERED = "not_delivered"
    #: the user may not publish to this group (room): nothing stored, nothing sent
    FORBIDDEN = "forbidden"
