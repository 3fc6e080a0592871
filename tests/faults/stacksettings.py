"""Django settings of the fault suite's stack: the example's, plus a stream group with history.

``channels-scale up --settings tests.faults.stacksettings`` gives them to every worker. Only two
things differ from the example: groups ``fault.*`` keep history (the suite's clients resume from
their offset), and ``send_timeout`` is short, so that "Redis down for longer than send_timeout"
fits in a short test.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403 -- the example's settings, changed below
from config.settings import CHANNEL_LAYERS

#: seconds the layer retries a send while Redis is down before raising LayerUnavailable
SEND_TIMEOUT = 2.0

CHANNEL_LAYERS["default"]["CONFIG"]["send_timeout"] = SEND_TIMEOUT
CHANNEL_LAYERS["default"]["CONFIG"]["history"] = {
    "chat.*": {"size": 1000, "ttl": 86400},
    "fault.*": {"size": 10000, "ttl": 600},
}
