"""The tutorial renders templates; plain responses keep this project to Python files."""

from django.http import HttpRequest, HttpResponse


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<h1>Chat rooms</h1>")


def room(request: HttpRequest, room_name: str) -> HttpResponse:
    return HttpResponse(f"<h1>Room {room_name}</h1>")
