"""Login throttling: too many failed logins per username or per client address → HTTP 429.

At most :data:`settings.LOGIN_FAILURES_PER_USER` failed logins per username and
:data:`settings.LOGIN_FAILURES_PER_IP` per client address (``REMOTE_ADDR``, which the worker
takes from the load balancer) in :data:`settings.LOGIN_FAILURE_WINDOW` seconds. Past either, a
login POST answers **429** with ``Retry-After`` and the password is not even checked, so guessing
costs a window per few attempts. Counts live in Django's cache: the example uses the stack's
Redis when ``CHANNELS_SCALE_REDIS_URL`` is set (shared by every worker; the first shard of
several), else each process's memory (also on a Redis Cluster or Sentinel, which Django's Redis
cache cannot use). A successful login does not reset the count (an attacker's own account must not
launder the address's budget).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from channels_scale.consumers import COUNTERS


def _keys(request: HttpRequest) -> list[tuple[str, int]]:
    username = str(request.POST.get("username", "")).strip().lower()
    user_key = hashlib.sha256(username.encode("utf-8", "replace")).hexdigest()[:32]
    address = str(request.META.get("REMOTE_ADDR", ""))
    return [
        (f"login-fail:user:{user_key}", settings.LOGIN_FAILURES_PER_USER),
        (f"login-fail:ip:{address}", settings.LOGIN_FAILURES_PER_IP),
    ]


class ThrottledLoginView(LoginView):
    """Django's ``LoginView``, answering 429 past the failed-login limits (module docstring)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        counts = cache.get_many([key for key, _ in _keys(request)])
        if any(counts.get(key, 0) >= limit for key, limit in _keys(request)):
            COUNTERS["login_throttled"] += 1
            return HttpResponse(
                "Too many failed logins; try again in a minute.\n",
                status=429,
                content_type="text/plain; charset=utf-8",
                headers={"Retry-After": str(settings.LOGIN_FAILURE_WINDOW)},
            )
        response: HttpResponse = super().post(request, *args, **kwargs)
        return response

    def form_invalid(self, form: Any) -> HttpResponse:
        window = settings.LOGIN_FAILURE_WINDOW
        for key, _ in _keys(self.request):
            cache.add(key, 0, window)  # starts the window; a no-op when it already runs
            try:
                cache.incr(key)
            except ValueError:  # expired between the two calls
                cache.set(key, 1, window)
        response: HttpResponse = super().form_invalid(form)
        return response
