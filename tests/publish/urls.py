"""A Django view that publishes with the sync API (the publish tests drive it with the test
client)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

import channels_scale


def publish_view(request: HttpRequest) -> HttpResponse:
    text = channels_scale.publish_json(request.GET["group"], {"n": int(request.GET["n"])})
    return HttpResponse(text, content_type="application/json")


urlpatterns = [path("publish/", publish_view)]
