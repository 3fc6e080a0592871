"""A websocket consumer on one group with history: resume without loss, presence, heartbeats.

:class:`StreamConsumer` is our :class:`~channels_scale.consumers.AsyncJsonWebsocketConsumer` plus
what a production real-time page needs (the browser side is ``client.js``):

- **Resume.** The client connects with ``?epoch=E&offset=N`` (its last position). The consumer
  joins the group first, then reads the group's stream after ``N`` and sends what was missed,
  then the live messages, with no gap and no duplicate (:mod:`channels_scale.history.merge`).
  A live message that shows a hole (a pub/sub copy lost while Redis reconnected) makes it read
  the stream again to fill it.
- **Reload.** When the history cannot cover the gap (the epoch changed: Redis lost the stream; or
  it was trimmed past ``N``; or more than :attr:`StreamConsumer.recovery_limit` messages were
  missed) the client gets ``{"type": "reload", "epoch", "offset", "reason"}`` and reloads its state
  from the source of truth, then continues from that position.
- **Presence.** Logged-in users are announced to the group (``join``/``leave``, once per user
  whatever the number of tabs) and the client gets the list on connect
  (:mod:`channels_scale.presence`). ``?prev=<conn>`` (the connection id the client had, from
  ``welcome``) removes that connection's entry at once when it belonged to the same user, so a
  reconnect after a worker crash shows as leave + join instead of a ghost tab for ``ttl`` seconds.
- **Heartbeat.** The frame ``{"type":"ping"}`` is answered with ``{"type":"pong"}`` before any
  application code runs.

Frames to the client::

    {"type": "welcome", "conn": "<connection id>"}
    {"epoch": "<epoch>", "offset": 42, "data": <the published JSON>}       a stream message
    {"type": "reload", "epoch": "<epoch>", "offset": 42, "reason": "epoch|trimmed|too_far"}
    {"type": "presence.state", "users": [{"id": 1, "name": "demo", "connections": 2}, ...]}
    {"type": "presence", "event": "join" | "leave", "user": {"id": 1, "name": "demo"}}
    {"type": "pong"}

Stream messages are published with :meth:`StreamConsumer.publish` or :func:`publish` (from a view
or a background job): the JSON is encoded once per message, never once per member.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels_scale.closecodes import CloseCode
from channels_scale.consumers import AsyncJsonWebsocketConsumer
from channels_scale.exceptions import LayerUnavailable
from channels_scale.history.merge import Position, Recovery
from channels_scale.layer.history import EPOCH_KEY, OFFSET_KEY
from channels_scale.presence import DEFAULT_TTL, Presence, send_event, tracker_for

logger = logging.getLogger("channels_scale.history")

#: the group message type of a stream message (handler ``stream_frame``)
STREAM_FRAME_TYPE = "stream.frame"
PING_FRAME = '{"type":"ping"}'
PONG_FRAME = '{"type":"pong"}'
#: a position far past any offset: reads the stream's state without reading entries
_STATE_ONLY = 2**53


def parse_position(query_string: bytes) -> tuple[Position | None, str | None]:
    """``(position, previous connection id)`` from a websocket URL's query string.

    A missing or malformed ``epoch``/``offset`` gives no position (the client is treated as new).
    """
    query = parse_qs(query_string.decode("latin1"))
    prev = query.get("prev", [None])[0]
    epoch = query.get("epoch", [""])[0]
    offset = query.get("offset", [""])[0]
    if not epoch or not (offset.isascii() and offset.isdigit()) or len(epoch) > 64:
        return None, prev
    return Position(epoch, int(offset)), prev


def stream_frame_text(event: dict[str, Any]) -> str:
    """The client frame of a stream message: the published JSON wrapped with its position,
    by string formatting (the published text is not decoded or encoded again)."""
    epoch = event.get(EPOCH_KEY)
    if epoch is None:
        return '{"data":' + str(event["text"]) + "}"
    # The epoch is a token of letters and digits made by the layer: no escaping needed.
    return f'{{"epoch":"{epoch}","offset":{event[OFFSET_KEY]:d},"data":{event["text"]}}}'


async def publish(layer: Any, group: str, content: Any) -> str:
    """Publish ``content`` (JSON-encodable) to ``group``'s stream; returns the encoded text."""
    text: str = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    await layer.group_send(group, {"type": STREAM_FRAME_TYPE, "text": text})
    return text


async def stream_position(layer: Any, group: str) -> Position | None:
    """The group's current (epoch, top offset), or None when the layer keeps no history for it.

    A page that renders state from the database reads this *before* its query, and hands it to
    ``client.js``: the client then resumes from there (it may get again a message the page
    already shows; ``client.js`` leaves de-duplication by message id to the application).
    """
    if not getattr(layer, "history_enabled", lambda group: False)(group):
        return None
    state, _ = await layer.group_history(group, after=_STATE_ONLY, limit=1)
    return Position(state.epoch, state.top)


class StreamConsumer(AsyncJsonWebsocketConsumer):
    """A consumer following one group's stream; call :meth:`join_stream` from ``connect``.

    Attributes:
        recovery_limit: most messages replayed on a resume; a bigger gap gets ``reload``.
        presence_ttl: seconds a dead worker's connections stay listed (see
            :mod:`channels_scale.presence`).
    """

    recovery_limit = 5000
    presence_ttl = DEFAULT_TTL
    stream_group: str | None = None
    _recovery: Recovery[dict[str, Any]] | None = None
    _presence_user: dict[str, Any] | None = None

    def presence_user(self) -> dict[str, Any] | None:
        """The info presence shows for this connection (``id`` required); None: not listed.

        Default: the logged-in Django user as ``{"id": pk, "name": username}``.
        """
        user = self.scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return {"id": user.pk, "name": user.get_username()}

    async def join_stream(self, group: str) -> None:
        """Accept the connection, join ``group``, resume the client and announce it.

        When Redis stays unreachable for the layer's ``send_timeout`` the connection is closed
        with 1013 (try again later); ``client.js`` reconnects with backoff.
        """
        try:
            await self._join_stream(group)
        except LayerUnavailable:
            logger.warning("join_stream(%s): Redis unreachable, closing with 1013", group)
            await self.close(int(CloseCode.TRY_AGAIN_LATER), "Redis unreachable, retry")

    async def _join_stream(self, group: str) -> None:
        layer = self.channel_layer
        since, prev = parse_position(self.scope.get("query_string", b""))
        self.stream_group = group
        await layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send(text_data='{"type":"welcome","conn":' + json.dumps(self.channel_name) + "}")
        if getattr(layer, "history_enabled", lambda group: False)(group):
            self._recovery = Recovery(since)
            await self._recover()
        user = self.presence_user()
        if user is not None and hasattr(layer, "on_group_shard"):
            await self._join_presence(layer, group, user, prev)

    async def _join_presence(
        self, layer: Any, group: str, user: dict[str, Any], prev: str | None
    ) -> None:
        presence = Presence(layer, self.presence_ttl)
        if prev and prev != self.channel_name:
            owner = await presence.connection_user(group, prev)
            if owner is not None and str(owner.get("id")) == str(user["id"]):
                for gone in await presence.leave(group, prev):
                    await send_event(layer, group, "leave", gone)
        self._presence_user = user
        if await presence.join(group, self.channel_name, user):
            await send_event(layer, group, "join", user)
        tracker_for(layer, self.presence_ttl).add(group, self.channel_name, user)
        users = await presence.members(group)
        await self.send(text_data=json.dumps({"type": "presence.state", "users": users}))

    async def _recover(self) -> None:
        recovery = self._recovery
        group = self.stream_group
        if recovery is None or group is None:
            return
        for _ in range(4):  # each round fills holes seen by the previous one
            state, items = await self.channel_layer.group_history(
                group, after=recovery.last, limit=self.recovery_limit
            )
            if recovery.epoch == state.epoch and state.top - recovery.last > self.recovery_limit:
                outcome = recovery.give_up(state, "too_far")
            else:
                outcome = recovery.history(state, items)
            if outcome.reload:
                await self.send_json(
                    {"type": "reload", "epoch": state.epoch, "offset": state.top,
                     "reason": outcome.reason}
                )  # fmt: skip
                return
            for _offset, event in outcome.deliver:
                await self.send(text_data=stream_frame_text(event))
            if not outcome.again:
                return

    async def stream_frame(self, event: dict[str, Any]) -> None:
        """A live stream message: send it in order, drop a duplicate, fill a hole first."""
        recovery = self._recovery
        if recovery is None or EPOCH_KEY not in event:
            await self.send(text_data=stream_frame_text(event))
            return
        to_send, gap = recovery.live(event[EPOCH_KEY], event[OFFSET_KEY], event)
        if gap:
            recovery.restart_recovery((event[EPOCH_KEY], event[OFFSET_KEY], event))
            try:
                await self._recover()
            except LayerUnavailable:
                # The hole cannot be filled now: the client resumes from its position later.
                await self.close(int(CloseCode.TRY_AGAIN_LATER), "Redis unreachable, retry")
            return
        for _offset, item in to_send:
            await self.send(text_data=stream_frame_text(item))

    async def presence_event(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "presence", "event": event["event"], "user": event["user"]})

    async def publish(self, content: Any) -> str:
        """Publish ``content`` to this connection's stream group (encoded once)."""
        if self.stream_group is None:
            raise RuntimeError("publish() before join_stream()")
        return await publish(self.channel_layer, self.stream_group, content)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data == PING_FRAME:
            await self.send(text_data=PONG_FRAME)
            return
        await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self.leave_stream()
        await super().websocket_disconnect(message)

    async def leave_stream(self) -> None:
        """Leave the group and presence (called on disconnect)."""
        group, self.stream_group = self.stream_group, None
        if group is None:
            return
        layer = self.channel_layer
        await layer.group_discard(group, self.channel_name)
        if self._presence_user is not None:
            tracker_for(layer, self.presence_ttl).discard(group, self.channel_name)
            presence = Presence(layer, self.presence_ttl)
            try:
                for gone in await presence.leave(group, self.channel_name):
                    await send_event(layer, group, "leave", gone)
            except LayerUnavailable:
                # The entry expires within presence_ttl; other workers' sweeps send the leave.
                logger.warning("presence leave of %s: Redis unreachable", group)
