from django.apps import AppConfig


class ChannelsScaleConfig(AppConfig):
    """Lets a project list ``channels_scale`` in ``INSTALLED_APPS`` (for its static files)."""

    name = "channels_scale"
    verbose_name = "channels-scale"
