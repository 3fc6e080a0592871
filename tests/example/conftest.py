"""Fixtures for the example chat: users, their session cookies, the in-memory channel layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client


@pytest.fixture
def in_memory_layer(settings: Any) -> None:
    """Channels' in-memory layer instead of Redis (Channels drops its cached layer on change)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


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
