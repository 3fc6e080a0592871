"""A separate process that publishes numbered messages to a group's stream (for recovery tests).

python tests/history/publisher.py REDIS_URL PREFIX GROUP COUNT [BURST]
"""

from __future__ import annotations

import asyncio
import sys

from channels_scale.history.consumer import publish
from channels_scale.layer import RedisChannelLayer


async def main(url: str, prefix: str, group: str, count: int, burst: int) -> None:
    layer = RedisChannelLayer(
        hosts=[url], prefix=prefix, history={"room.*": {"size": 100_000, "ttl": 600}}
    )
    for n in range(1, count + 1):
        await publish(layer, group, {"n": n})
        if n % burst == 0:
            await asyncio.sleep(0.005)  # let receivers interleave: reconnects land mid-stream
    await layer.close()


if __name__ == "__main__":
    url, prefix, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    burst = int(sys.argv[5]) if len(sys.argv) > 5 else 50
    asyncio.run(main(url, prefix, group, count, burst))
