"""A separate OS process holding group members, for the multi-process tests.

Usage: ``python -m tests.layer.member_process URL PREFIX GROUP MEMBERS MESSAGES``

Prints ``ready <channel> ...`` once its members joined, then one ``got <channel> <n>`` line per
message received on its first channel's "direct" path, and finally ``done <total>`` when every
member got MESSAGES group messages (or ``timeout <total>`` after 30 s).
"""

from __future__ import annotations

import asyncio
import sys

from channels_scale.layer import RedisChannelLayer


async def main(url: str, prefix: str, group: str, members: int, messages: int) -> None:
    layer = RedisChannelLayer(hosts=[url], prefix=prefix)
    channels = [await layer.new_channel() for _ in range(members)]
    for channel in channels:
        await layer.group_add(group, channel)
    print("ready", *channels, flush=True)
    total = 0

    async def consume(channel: str) -> None:
        nonlocal total
        got = 0
        while got < messages:
            message = await layer.receive(channel)
            if message["type"] == "direct":
                print("got", channel, message["n"], flush=True)
                continue
            got += 1
            total += 1

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(consume(c) for c in channels))
        print("done", total, flush=True)
    except TimeoutError:
        print("timeout", total, flush=True)
    print("stats", layer.stats()["lost_gap"], flush=True)
    await layer.close()


if __name__ == "__main__":
    url, prefix, group, members, messages = sys.argv[1:6]
    asyncio.run(main(url, prefix, group, int(members), int(messages)))
