"""Fixtures for the example chat: users, their session cookies, the in-memory channel layer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from channels_scale.settings import channel_layers_from_env


@pytest.fixture
def in_memory_layer(settings: Any) -> None:
    """Channels' in-memory layer instead of Redis (Channels drops its cached layer on change)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
def redis_layer(settings: Any, shared_redis: Any) -> None:
    """The example's layer (ours, chat history on) on a real redis-server, own prefix per test."""
    settings.CHANNEL_LAYERS = channel_layers_from_env(
        options={
            "prefix": "t" + uuid.uuid4().hex[:12],
            "history": {"chat.*": {"size": 1000, "ttl": 600}},
        }
    )
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [shared_redis.url]


@pytest.fixture
def make_user(django_user_model: type[User]) -> Callable[[str], User]:
    def make(username: str) -> User:
        return django_user_model.objects.create_user(username=username, password=username)

    return make


@pytest.fixture
def session_cookie() -> Callable[[User], bytes]:
    """The ``Cookie`` header of a logged-in session for ``user`` (what a browser would send)."""

    def cookie(user: User) -> bytes:
        client = Client()
        client.force_login(user)
        name = django_settings.SESSION_COOKIE_NAME
        return f"{name}={client.cookies[name].value}".encode()

    return cookie


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Hashing with the default PBKDF2 costs ~0.2 s a user; these tests create many."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    """Failed-login counts (chat.throttle) live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()
