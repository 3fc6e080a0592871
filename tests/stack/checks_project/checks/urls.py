from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.urls import path


def users(request: HttpRequest) -> HttpResponse:
    """Reads the database: fails with "no such table" until migrated."""
    return HttpResponse(f"{User.objects.count()} users")


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [path("", users), path("ok/", ok)]
