"""The stack ``channels-scale up`` runs: Redis, N ASGI workers, nginx/HAProxy, under supervisor."""

from channels_scale.stack.options import RunLayout, StackOptions
from channels_scale.stack.runner import Stack

__all__ = ["RunLayout", "Stack", "StackOptions"]
