from django.apps import AppConfig


class ChatConfig(AppConfig):
    """The example chat: rooms, stored messages, a websocket consumer per connection."""

    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"
