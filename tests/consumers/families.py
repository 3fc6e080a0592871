"""The behaviour-suite consumers, built once on Channels' base classes and once on ours."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from channels.exceptions import DenyConnection, StopConsumer
from channels.generic import websocket as channels_ws

from channels_scale import consumers as ours


@dataclass
class Journal:
    """What the consumers of one test did (shared by all consumers of a family in a test)."""

    events: list[Any] = field(default_factory=list)


def build(ws_base: type[Any], json_base: type[Any]) -> tuple[type[Any], type[Any]]:
    """A text/bytes consumer and a JSON consumer on the given base classes."""

    class Echo(ws_base):  # type: ignore[misc,valid-type]
        journal: Journal

        async def connect(self) -> None:
            query = self.scope.get("query_string", b"")
            if query == b"deny":
                raise DenyConnection()
            if query == b"ignore":
                await self.close()
                return
            await self.accept(subprotocol="v1" if query == b"proto" else None)

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            if bytes_data is not None:
                await self.send(bytes_data=b"echo:" + bytes_data)
                return
            assert text_data is not None
            verb, _, arg = text_data.partition(" ")
            if verb == "whoami":
                await self.send(text_data=self.channel_name)
            elif verb == "join":
                await self.channel_layer.group_add(arg, self.channel_name)
                await self.send(text_data="joined " + arg)
            elif verb == "leave":
                await self.channel_layer.group_discard(arg, self.channel_name)
                await self.send(text_data="left " + arg)
            elif verb == "shout":
                group, _, words = arg.partition(" ")
                await self.channel_layer.group_send(group, {"type": "room.message", "text": words})
            elif verb == "bye":
                await self.send(text_data="bye", close=True)
            elif verb == "close":
                await self.close(code=int(arg), reason="asked")
            elif verb == "slow":
                self.journal.events.append("slow start")
                await asyncio.sleep(float(arg))
                self.journal.events.append("slow end")
                await self.send(text_data="slow done")
            else:
                await self.send(text_data="echo:" + text_data)

        async def room_message(self, event: dict[str, Any]) -> None:
            self.journal.events.append(("room", event["text"]))
            await self.send(text_data="room:" + event["text"])

        async def stop_now(self, event: dict[str, Any]) -> None:
            raise StopConsumer()

        async def fail_now(self, event: dict[str, Any]) -> None:
            raise RuntimeError("handler failed")

        async def disconnect(self, code: int) -> None:
            self.journal.events.append(("disconnect", code))

    class Json(json_base):  # type: ignore[misc,valid-type]
        journal: Journal

        async def receive_json(self, content: Any, **kwargs: Any) -> None:
            if content == "close":
                await self.send_json({"bye": True}, close=True)
                return
            await self.send_json({"echo": content})

    return Echo, Json


ChannelsEcho, ChannelsJson = build(
    channels_ws.AsyncWebsocketConsumer, channels_ws.AsyncJsonWebsocketConsumer
)
OursEcho, OursJson = build(ours.AsyncWebsocketConsumer, ours.AsyncJsonWebsocketConsumer)

FAMILIES = {"channels": (ChannelsEcho, ChannelsJson), "ours": (OursEcho, OursJson)}
