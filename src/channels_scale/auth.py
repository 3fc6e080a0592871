"""Signed, short-lived, audience-bound tokens for websocket clients that have no browser session.

A browser logs in with Django's session cookie (Channels' ``AuthMiddlewareStack``). Other clients
(apps, scripts, servers) connect with ``?token=<token>`` in the websocket URL; the token is issued
by the Django project, from code (:func:`issue_token`) or from the command line
(``channels-scale token --user NAME --audience chat --ttl 300``).

A token is ``django.core.signing`` output (HMAC-SHA256 with ``SECRET_KEY``, salt
:data:`TOKEN_SALT`) over ``{"u": <user pk>, "a": <audience>, "e": <expiry, unix s>}``: it cannot
be forged without ``SECRET_KEY``, it is refused after its expiry (``e``) and anywhere but its
audience (an endpoint's name: a token for ``chat`` does not open ``notifications``). It carries no
secret and is not encrypted. Why the query string: every websocket client can set it (browsers
cannot set headers); the cost is that proxies may log URLs, which is why tokens live minutes
(:data:`DEFAULT_TTL`) and name one audience. Rotating ``SECRET_KEY`` revokes every token.

:class:`TokenAuthMiddleware` checks it at the handshake: a valid token sets ``scope["user"]``;
a missing, malformed, expired, foreign-audience token or an inactive user leaves the scope as it
was (anonymous unless a session logged it in), so the endpoint's own rule applies (the chat closes
with 4401, :attr:`~channels_scale.closecodes.CloseCode.UNAUTHORIZED`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "DEFAULT_TTL",
    "TOKEN_SALT",
    "TokenAuthMiddleware",
    "TokenError",
    "issue_token",
    "register",
    "verify_token",
]

#: the ``django.core.signing`` salt of websocket tokens (a token of another use never passes)
TOKEN_SALT = "channels_scale.auth.token"
#: default lifetime of a token, seconds
DEFAULT_TTL = 300
# Longest token accepted from a query string (a real one is ~120 characters).
_MAX_TOKEN_CHARS = 1024

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class TokenError(ValueError):
    """A token that does not open this audience: malformed, forged, expired or foreign."""


def issue_token(user_id: int | str, audience: str, ttl: float = DEFAULT_TTL) -> str:
    """A token that logs user ``user_id`` in to ``audience`` for ``ttl`` seconds."""
    from django.core import signing

    if ttl <= 0:
        raise ValueError("ttl must be positive")
    payload = {"u": user_id, "a": audience, "e": int(time.time() + ttl)}
    return signing.dumps(payload, salt=TOKEN_SALT, compress=False)


def verify_token(token: str, audience: str, now: float | None = None) -> int | str:
    """The user id of a valid ``token`` for ``audience``.

    Raises:
        TokenError: the token is malformed or forged, expired, or for another audience.
    """
    from django.core import signing

    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise TokenError("malformed token")
    try:
        payload = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        raise TokenError("bad signature") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("e"), int):
        raise TokenError("malformed token")
    if payload.get("a") != audience:
        raise TokenError("token for another audience")
    if payload["e"] <= (time.time() if now is None else now):
        raise TokenError("expired token")
    user_id = payload.get("u")
    if not isinstance(user_id, int | str):
        raise TokenError("malformed token")
    return user_id


def _load_active_user(user_id: int | str) -> Any:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    try:
        user = model._default_manager.get(pk=user_id)
    except (model.DoesNotExist, ValueError, TypeError):
        return None
    return user if getattr(user, "is_active", True) else None


class TokenAuthMiddleware:
    """Log a websocket in from ``?token=`` (see the module docstring); else leave the scope.

    Put it inside Channels' ``AuthMiddlewareStack`` so a session login still works::

        AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(routes), audience="chat"))
    """

    def __init__(self, app: ASGIApp, audience: str) -> None:
        self.app = app
        self.audience = audience

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            token = _query_token(scope.get("query_string", b""))
            if token is not None:
                user = await self._user(token)
                if user is not None:
                    scope = {**scope, "user": user}
        await self.app(scope, receive, send)

    async def _user(self, token: str) -> Any:
        from channels.db import database_sync_to_async

        try:
            user_id = verify_token(token, self.audience)
        except TokenError:
            return None
        return await database_sync_to_async(_load_active_user)(user_id)


def _query_token(query_string: bytes) -> str | None:
    values = parse_qs(query_string.decode("latin1")).get("token")
    return values[0] if values else None


# -- channels-scale token ---------------------------------------------------------------------


def register(commands: Any) -> None:
    """Add ``channels-scale token`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "token",
        help="print a websocket token for a user (signed with the app's SECRET_KEY)",
        description="Print a signed, short-lived token that logs USER in to AUDIENCE's "
        "websocket endpoint (?token=...). Uses the Django settings of the app (default: the "
        "example) and its SECRET_KEY, so run it with the same environment as the workers.",
    )
    parser.add_argument("--user", required=True, help="username")
    parser.add_argument("--audience", required=True, help="endpoint name, e.g. chat")
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL, help="seconds (default 300)")
    parser.add_argument("--settings", help="DJANGO_SETTINGS_MODULE (default: the example's)")
    parser.add_argument("--pythonpath", action="append", default=[], metavar="DIR")
    parser.set_defaults(func=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    """Print a token; exit 2 with one line on stderr for an unknown user or a bad ``--ttl``."""
    from channels_scale.stack.options import EXAMPLE_DIR, EXAMPLE_SETTINGS

    if not args.ttl > 0:
        print("channels-scale: error: --ttl must be a positive number of seconds", file=sys.stderr)
        return 2
    if args.settings is None:
        sys.path.insert(0, str(EXAMPLE_DIR))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", EXAMPLE_SETTINGS)
    else:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    for path in reversed(args.pythonpath):
        sys.path.insert(0, path)
    import django
    from django.contrib.auth import get_user_model

    django.setup()
    model = get_user_model()
    try:
        user = model._default_manager.get(**{str(model.USERNAME_FIELD): args.user})
    except model.DoesNotExist:
        print(f"channels-scale: error: no user {args.user!r}", file=sys.stderr)
        return 2
    print(issue_token(user.pk, args.audience, args.ttl))
    return 0
