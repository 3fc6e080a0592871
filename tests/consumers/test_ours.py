"""What only our consumers do: pre-encoded frames, the slow-client hook, fair turns."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from channels_scale import consumers
from channels_scale.closecodes import CloseCode
from tests.consumers.conftest import wait

# Both families run Django's close_old_connections in asgiref's DB thread. Under pytest-django
# that thread may still hold a connection from an earlier test (an in-memory SQLite connection
# cannot be closed), and outside a django_db test pytest-django blocks the DB access the check
# needs. These tests write nothing; the mark only allows that access.
pytestmark = pytest.mark.django_db


class Room(consumers.AsyncJsonWebsocketConsumer):
    groups = ["room"]
    encoded = 0

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        cls.encoded += 1
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.group_send_json("room", content)


async def test_group_send_json_encodes_once_for_all_members() -> None:
    Room.encoded = 0
    members = [WebsocketCommunicator(Room.as_asgi(), "/ws/") for _ in range(5)]
    for ws in members:
        assert (await ws.connect(timeout=wait()))[0]
    await members[0].send_json_to({"text": "héllo", "n": 1})
    for ws in members:
        assert await ws.receive_from(timeout=wait()) == '{"text":"héllo","n":1}'
    assert Room.encoded == 1
    for ws in members:
        await ws.disconnect(timeout=wait())


async def test_module_group_send_json_from_outside_a_consumer() -> None:
    ws = WebsocketCommunicator(Room.as_asgi(), "/ws/")
    assert (await ws.connect(timeout=wait()))[0]
    text = await consumers.group_send_json(get_channel_layer(), "room", [1, 2])
    assert text == "[1, 2]"
    assert await ws.receive_from(timeout=wait()) == "[1, 2]"
    await get_channel_layer().group_send("room", {"type": "client.frame", "bytes": b"\x01"})
    assert await ws.receive_from(timeout=wait()) == b"\x01"
    await ws.disconnect(timeout=wait())


async def test_layer_overflow_notice_closes_with_1013() -> None:
    ws = WebsocketCommunicator(Room.as_asgi(), "/ws/")
    assert (await ws.connect(timeout=wait()))[0]
    notice = {"type": consumers.OVERFLOW_NOTICE_TYPE, "dropped": 3, "total_dropped": 3}
    await get_channel_layer().group_send("room", notice)
    output = await ws.receive_output(timeout=wait())
    assert output == {
        "type": "websocket.close",
        "code": CloseCode.TRY_AGAIN_LATER,
        "reason": "too slow",
    }
    await ws.disconnect(timeout=wait())


class Busy(consumers.AsyncWebsocketConsumer):
    """Each handler takes a turn that yields to the loop, to make the two sources contend."""

    order: list[str] = []

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.order.append("ws:" + str(text_data))
        await asyncio.sleep(0)

    async def tick(self, event: dict[str, Any]) -> None:
        self.order.append("layer:" + event["n"])
        await asyncio.sleep(0)


async def test_sources_take_turns() -> None:
    """Flooded from both sides at once, neither source starves the other; each keeps its order."""
    Busy.order = []
    ws = WebsocketCommunicator(Busy.as_asgi(), "/ws/")
    assert (await ws.connect(timeout=wait()))[0]
    layer = get_channel_layer()
    channel = await _only_channel_name(layer)
    # Neither call suspends (unbounded queues), so all 60 messages are waiting at once.
    for i in range(30):
        await ws.send_to(text_data=str(i))
        await layer.send(channel, {"type": "tick", "n": str(i)})
    for _ in range(200):
        if len(Busy.order) == 60:
            break
        await asyncio.sleep(0.01)
    assert [x for x in Busy.order if x.startswith("ws:")] == [f"ws:{i}" for i in range(30)]
    assert [x for x in Busy.order if x.startswith("layer:")] == [f"layer:{i}" for i in range(30)]
    # taking turns: the two sources alternate instead of one draining first
    assert Busy.order.index("layer:1") < Busy.order.index("ws:3")
    assert Busy.order.index("ws:1") < Busy.order.index("layer:3")
    await ws.disconnect(timeout=wait())


async def _only_channel_name(layer: Any) -> str:
    # The in-memory layer creates a queue for a channel when its receive() starts waiting.
    for _ in range(100):
        names = [name for name in layer.channels if "!" in name]
        if names:
            assert len(names) == 1
            return names[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the consumer never waited on the layer")
