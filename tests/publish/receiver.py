"""A separate OS process with one member in a group, printing what it receives (publish tests).

Usage: ``python -m tests.publish.receiver URL PREFIX GROUP COUNT``

Prints ``ready`` once its channel joined the group, then one JSON line per message received, and
``done`` after COUNT messages (or ``timeout`` after 60 s without reaching them).
"""

from __future__ import annotations

import asyncio
import json
import sys

from channels_scale.layer import RedisChannelLayer

HISTORY = {"stream.*": {"size": 10_000, "ttl": 600}}


async def main(url: str, prefix: str, group: str, count: int) -> None:
    # a big buffer: many publishing threads may outrun this reader for a moment
    layer = RedisChannelLayer(hosts=[url], prefix=prefix, capacity=100_000, history=HISTORY)
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    print("ready", flush=True)
    try:
        async with asyncio.timeout(60):
            for _ in range(count):
                message = await layer.receive(channel)
                print(json.dumps(message, default=str), flush=True)
        print("done", flush=True)
    except TimeoutError:
        print("timeout", flush=True)
    await layer.close()


if __name__ == "__main__":
    url, prefix, group, count = sys.argv[1:5]
    asyncio.run(main(url, prefix, group, int(count)))
