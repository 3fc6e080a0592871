"""A process that publishes once and exits normally (the exit test checks it does so quickly and
quietly): ``python -m tests.publish.exits URL PREFIX``."""

from __future__ import annotations

import sys

import django
from django.conf import settings

import channels_scale

if __name__ == "__main__":
    url, prefix = sys.argv[1:3]
    layer = {"BACKEND": "channels_scale.layer.RedisChannelLayer"}
    settings.configure(
        CHANNEL_LAYERS={"default": {**layer, "CONFIG": {"hosts": [url], "prefix": prefix}}}
    )
    django.setup()
    channels_scale.publish("exit", {"type": "m"})
    print("published", flush=True)
