"""Presence: who is connected to a group, with join/leave events, on the layer's Redis.

Per group, three keys on the group's shard (same ``{hash tag}`` as the group):

- ``presence:{group}``: sorted set, connection id → the time its entry expires (ms);
- ``pinfo:{group}``: hash, connection id → the user's info as JSON (must hold an ``"id"``);
- ``pusers:{group}``: hash, user id → how many live connections that user has.

A user with several tabs (connections) is present once: :meth:`Presence.join` reports the user's
*first* connection and :meth:`Presence.leave` the *last* one, so the consumer sends one ``join``
and one ``leave`` event per user, not per tab.

Liveness: each process refreshes the entries of its connections every ``ttl / 3`` seconds
(:class:`PresenceTracker`, one task per event loop, one script call per group). The entries of a
process that died (SIGKILL, a lost machine) stop being refreshed and expire; the trackers of the
processes still alive sweep expired entries every ``ttl / 3`` seconds and send the ``leave``
events. So a dead worker's connections are gone from :meth:`Presence.members` within ``ttl``
seconds, and their ``leave`` events are sent within ``ttl * 4 / 3`` seconds (default ttl 30 s).
A Redis that lost the keys (a restart) gets them back at the next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import weakref
from typing import Any

from channels_scale.exceptions import ChannelsScaleError
from channels_scale.layer.connection import Script

logger = logging.getLogger("channels_scale.presence")

DEFAULT_TTL = 30.0

#: the group message type of presence events (consumer handler ``presence_event``)
EVENT_TYPE = "presence.event"

# KEYS: zset, info hash, users hash. ARGV: key ttl ms, then (conn, expires_at ms, info json,
# user id) repeated. Adds or refreshes entries; returns the info of users whose first
# connection this is (they just joined).
_JOIN = Script("""
local joined = {}
for i = 2, #ARGV, 4 do
  local conn, expires, info, uid = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('ZADD', KEYS[1], expires, conn) == 1 then
    redis.call('HSET', KEYS[2], conn, info)
    if redis.call('HINCRBY', KEYS[3], uid, 1) == 1 then
      table.insert(joined, info)
    end
  end
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[1]) end
return joined
""")

# KEYS: zset, info hash, users hash. ARGV: 1 expired-before (ms) or '' , then connection ids to
# remove (may be none). With ARGV[1] set, also removes every entry that expired before it.
# Returns the info of users who have no connection left (they just left).
_LEAVE = Script("""
local function remove(conn, gone)
  if redis.call('ZREM', KEYS[1], conn) == 0 then return end
  local info = redis.call('HGET', KEYS[2], conn)
  redis.call('HDEL', KEYS[2], conn)
  if not info then return end
  local uid = tostring(cjson.decode(info)['id'])
  if redis.call('HINCRBY', KEYS[3], uid, -1) <= 0 then
    redis.call('HDEL', KEYS[3], uid)
    table.insert(gone, info)
  end
end
local gone = {}
for i = 2, #ARGV do remove(ARGV[i], gone) end
if ARGV[1] ~= '' then
  for _, conn in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)) do
    remove(conn, gone)
  end
end
return gone
""")


class PresenceError(ChannelsScaleError, ValueError):
    """Presence needs user info with an ``"id"``, a ``channels_scale.layer.RedisChannelLayer``,
    and one ``ttl`` per layer and event loop."""


def _keys(layer: Any, group: str) -> list[bytes | str]:
    return list(layer.keys.presence(group))


def _decode(items: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(item) for item in items]


class _MemoryPresence:
    """The same data and rules as the two scripts above, in memory (the layer's memory broker).

    One per layer instance, shared by its event loops (hence the lock).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: group -> conn -> (expires at ms, info json, user id)
        self.conns: dict[str, dict[str, tuple[int, str, str]]] = {}
        #: group -> user id -> live connections
        self.users: dict[str, dict[str, int]] = {}

    def join(self, group: str, entries: list[list[Any]]) -> list[str]:
        joined: list[str] = []
        with self.lock:
            conns = self.conns.setdefault(group, {})
            users = self.users.setdefault(group, {})
            for conn, expires, info, uid in entries:
                new = conn not in conns
                conns[conn] = (expires, conns[conn][1] if not new else info, uid)
                if new:
                    users[uid] = users.get(uid, 0) + 1
                    if users[uid] == 1:
                        joined.append(info)
        return joined

    def leave(self, group: str, expired_before: int | None, conns: tuple[str, ...]) -> list[str]:
        gone: list[str] = []
        with self.lock:
            entries = self.conns.get(group, {})
            users = self.users.get(group, {})
            doomed = list(conns)
            if expired_before is not None:
                doomed += [c for c, (exp, _, _) in entries.items() if exp <= expired_before]
            for conn in doomed:
                entry = entries.pop(conn, None)
                if entry is None:
                    continue
                uid = entry[2]
                users[uid] = users.get(uid, 0) - 1
                if users[uid] <= 0:
                    del users[uid]
                    gone.append(entry[1])
        return gone

    def info(self, group: str, conn: str) -> str | None:
        with self.lock:
            entry = self.conns.get(group, {}).get(conn)
        return None if entry is None else entry[1]

    def live(self, group: str, now_ms: int) -> tuple[list[str], dict[str, str]]:
        with self.lock:
            entries = self.conns.get(group, {})
            live = [c for c, (exp, _, _) in entries.items() if exp >= now_ms]
            return live, {c: entries[c][1] for c in live}


class Presence:
    """Presence of one layer (``channels_scale.layer.RedisChannelLayer``), on Redis, or in
    memory when the layer runs the memory broker.

    Args:
        layer: the channel layer; presence lives on the shard of each group.
        ttl: seconds an entry lives without a refresh (the bound for a dead worker's entries).
    """

    def __init__(self, layer: Any, ttl: float = DEFAULT_TTL) -> None:
        if not hasattr(layer, "run_group_script"):
            raise PresenceError("presence needs channels_scale.layer.RedisChannelLayer")
        self.layer = layer
        self.ttl = ttl
        self._memory: _MemoryPresence | None = None
        if layer.config.broker == "memory":
            self._memory = layer.instance_resource("presence", _MemoryPresence)

    async def _run(self, group: str, script: Script, args: list[Any], what: str) -> list[Any]:
        # the layer's one way to run Lua: EVALSHA (EVAL after NOSCRIPT), bounded retry with
        # full-jitter backoff for send_timeout
        keys = _keys(self.layer, group)
        return list(await self.layer.run_group_script(group, script, keys, args, what))

    def _entry(self, conn: str, user: dict[str, Any], now: float) -> list[Any]:
        if "id" not in user:
            raise PresenceError("presence user info needs an 'id'")
        return [conn, int((now + self.ttl) * 1000), json.dumps(user), str(user["id"])]

    async def join(self, group: str, conn: str, user: dict[str, Any]) -> bool:
        """Add (or refresh) connection ``conn`` of ``user``; True when it is the user's first."""
        entry = self._entry(conn, user, time.time())
        if self._memory is not None:
            return bool(self._memory.join(group, [entry]))
        args = [int(self.ttl * 4000), *entry]
        return bool(await self._run(group, _JOIN, args, "presence join"))

    async def refresh(self, group: str, entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Refresh many connections of one group in one call; users that (re)appeared."""
        now = time.time()
        if self._memory is not None:
            rows = [self._entry(conn, user, now) for conn, user in entries.items()]
            return [json.loads(info) for info in self._memory.join(group, rows)]
        args: list[Any] = [int(self.ttl * 4000)]
        for conn, user in entries.items():
            args += self._entry(conn, user, now)
        return _decode(await self._run(group, _JOIN, args, "presence refresh"))

    async def leave(self, group: str, *conns: str) -> list[dict[str, Any]]:
        """Remove connections; the users who have no connection left."""
        if self._memory is not None:
            return [json.loads(info) for info in self._memory.leave(group, None, conns)]
        return _decode(await self._run(group, _LEAVE, ["", *conns], "presence leave"))

    async def sweep(self, group: str) -> list[dict[str, Any]]:
        """Remove expired entries (dead processes); the users who have no connection left."""
        now_ms = int(time.time() * 1000)
        if self._memory is not None:
            return [json.loads(info) for info in self._memory.leave(group, now_ms, ())]
        return _decode(await self._run(group, _LEAVE, [now_ms], "presence sweep"))

    async def connection_user(self, group: str, conn: str) -> dict[str, Any] | None:
        """The user info of connection ``conn``, or None."""
        if self._memory is not None:
            info = self._memory.info(group, conn)
            return json.loads(info) if info else None
        keys = _keys(self.layer, group)

        async def call(client: Any) -> Any:
            return await client.hget(keys[1], conn)

        raw = await self.layer.on_group_shard(group, call, "presence lookup")
        return json.loads(raw) if raw else None

    async def members(self, group: str) -> list[dict[str, Any]]:
        """Users present in ``group`` (each once, with ``"connections"``: how many), by id."""
        keys = _keys(self.layer, group)
        now_ms = int(time.time() * 1000)

        async def call(client: Any) -> Any:
            async with client.pipeline(transaction=True) as pipe:
                pipe.zrangebyscore(keys[0], now_ms, "+inf")
                pipe.hgetall(keys[1])
                return await pipe.execute()

        if self._memory is not None:
            live, infos = self._memory.live(group, now_ms)
        else:
            live, infos = await self.layer.on_group_shard(group, call, "presence members")
        users: dict[str, dict[str, Any]] = {}
        for conn in live:
            raw = infos.get(conn)
            if raw is None:
                continue
            info = json.loads(raw)
            key = str(info["id"])
            if key in users:
                users[key]["connections"] += 1
            else:
                users[key] = {**info, "connections": 1}
        return sorted(users.values(), key=lambda u: str(u["id"]))


class PresenceTracker:
    """Keeps this event loop's connections alive in Redis and sweeps dead processes' entries.

    One per (layer, event loop), from :func:`tracker_for`. Sends ``leave`` events for users
    whose last connection expired. Never raises: a Redis outage only delays the next beat.
    """

    def __init__(self, presence: Presence) -> None:
        self.presence = presence
        self.groups: dict[str, dict[str, dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, group: str, conn: str, user: dict[str, Any]) -> None:
        self.groups.setdefault(group, {})[conn] = user
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._beat(), name="channels_scale presence"
            )

    async def aclose(self) -> None:
        """Stop the heartbeat (the layer calls it when it closes this event loop's part)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def discard(self, group: str, conn: str) -> None:
        entries = self.groups.get(group)
        if entries is not None:
            entries.pop(conn, None)
            if not entries:
                del self.groups[group]

    async def _beat(self) -> None:
        interval = self.presence.ttl / 3
        layer = self.presence.layer
        while self.groups:
            await asyncio.sleep(interval)
            for group, entries in list(self.groups.items()):
                try:
                    if entries:
                        for user in await self.presence.refresh(group, dict(entries)):
                            await send_event(layer, group, "join", user)
                    for user in await self.presence.sweep(group):
                        await send_event(layer, group, "leave", user)
                except Exception:  # a Redis outage must not stop the beat
                    logger.warning("presence heartbeat of %s failed", group, exc_info=True)


async def send_event(layer: Any, group: str, event: str, user: dict[str, Any]) -> None:
    """Tell ``group`` that ``user`` joined or left (live only: not kept in history)."""
    message = {"type": EVENT_TYPE, "event": event, "user": user}
    if hasattr(layer, "history_enabled"):
        await layer.group_send(group, message, history=False)
    else:
        await layer.group_send(group, message)


#: a weak index of the trackers per loop, for stop_trackers(); the layer owns each tracker
_trackers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakSet[PresenceTracker]
] = weakref.WeakKeyDictionary()


def tracker_for(layer: Any, ttl: float = DEFAULT_TTL) -> PresenceTracker:
    """The presence tracker of ``layer`` on the running event loop.

    The tracker belongs to the layer's part for this event loop (closed with it).

    Raises:
        PresenceError: the layer is not ours, or a tracker with another ``ttl`` exists already.
    """
    if not hasattr(layer, "loop_resource"):
        raise PresenceError("presence needs channels_scale.layer.RedisChannelLayer")
    tracker: PresenceTracker = layer.loop_resource(
        "presence", lambda: PresenceTracker(Presence(layer, ttl))
    )
    if tracker.presence.ttl != ttl:
        raise PresenceError(
            f"presence ttl {ttl:g} s asked, but this layer tracks presence with ttl "
            f"{tracker.presence.ttl:g} s: use one ttl per layer"
        )
    _trackers.setdefault(asyncio.get_running_loop(), weakref.WeakSet()).add(tracker)
    return tracker


async def stop_trackers() -> None:
    """Stop this loop's trackers (tests, shutdown)."""
    for tracker in list(_trackers.get(asyncio.get_running_loop(), ())):
        await tracker.aclose()
