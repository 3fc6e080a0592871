"""Websocket close codes used by channels-scale, in one place.

=====  ==============================  ====================================================
code   name                            meaning
=====  ==============================  ====================================================
1000   NORMAL                          normal closure
1001   GOING_AWAY                      the worker is shutting down; reconnect
1008   POLICY_VIOLATION                a malformed frame for the endpoint (e.g. bad JSON)
1009   MESSAGE_TOO_BIG                 a frame over the endpoint's maximum message size
1011   INTERNAL_ERROR                  the server failed while handling the connection
1013   TRY_AGAIN_LATER                 the server is overloaded (slow client, full buffer)
4401   UNAUTHORIZED                    the endpoint needs a logged-in user; log in and retry
4403   FORBIDDEN                       the user may not join this room
=====  ==============================  ====================================================

A handshake from a foreign browser origin is refused before it is accepted: the client sees
HTTP 403 (browsers report close code 1006), never a websocket.
"""

from __future__ import annotations

from enum import IntEnum


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
