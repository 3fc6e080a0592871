"""channels-scale: Django Channels websockets at scale.

Redis channel layer, N ASGI worker processes, nginx or HAProxy in front, all under supervisor.
"""

__version__ = "0.1.0"
