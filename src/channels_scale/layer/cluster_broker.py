"""The Redis Cluster :class:`~.broker.Broker`: sharded pub/sub and one hash slot per group.

Selected by a ``redis+cluster://`` host (:mod:`.cluster`). What goes where:

- every key and channel of one name carries it as a hash tag (:class:`~.naming.Keys`:
  ``asgi:group:{g}``, ``asgi:stream:{g}``, ``asgi:gq:{g}``, ``asgi:presence:{g}`` ...), so a
  group's stream, offset, epoch, queue members and presence live in one slot and its scripts run
  on one node, unchanged except that they publish with ``SPUBLISH``;
- group and inbox frames go by ``SPUBLISH`` to the slot's master, which forwards them to its own
  replicas only, not to every node as classic ``PUBLISH`` does in a cluster;
- subscriptions are ``SSUBSCRIBE`` on one reader per master (:mod:`.cluster_pubsub`; one
  subscribing connection per node and event loop, whatever the number of channels);
- commands go to the slot's master on that node's :class:`~.connection.Shard` (pipe and pools);
  ``MOVED`` updates the slot and retries, ``ASK`` retries once on the target after ``ASKING``;
  an unreachable node, ``CLUSTERDOWN`` or ``TRYAGAIN`` is retried with backoff for
  ``send_timeout`` while the slot map is reloaded (``CLUSTER SLOTS``), so a failover is followed;
- a watch task reloads the map every :data:`REFRESH_INTERVAL`, and every :data:`RETRY_INTERVAL`
  while a reader is down, a command failed or a node dropped a channel, then moves every
  subscription whose slot changed master to that master's reader.

Delivery stays at most once, as with one Redis: frames published while a subscription is being
moved are lost and counted by the receivers' gap detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio import Redis

from channels_scale.exceptions import ConfigError, LayerUnavailable
from channels_scale.layer.backoff import full_jitter
from channels_scale.layer.broker import FrameCallback
from channels_scale.layer.cluster import ClusterSeeds, SlotMap, cluster_seeds, key_slot
from channels_scale.layer.cluster import parse_redirect as _redirect
from channels_scale.layer.cluster_pubsub import ShardedSubscriptions
from channels_scale.layer.config import HostConfig, LayerConfig
from channels_scale.layer.connection import BLOCKING_POP_TIMEOUT, REDIS_DOWN_ERRORS, Script, Shard
from channels_scale.layer.naming import Keys
from channels_scale.layer.pipe import ReplyError, encode
from channels_scale.layer.redis_broker import RedisBroker
from channels_scale.layer.stats import Counters

T = TypeVar("T")

logger = logging.getLogger("channels_scale.layer")

#: the slot map is reloaded this often even when nothing looks wrong (a resharding), seconds
REFRESH_INTERVAL = 5.0
#: ...and this often while a reader is down or a node dropped a channel (a failover)
RETRY_INTERVAL = 0.25
#: backoff cap between retries of one command: a failover is seen by polling the map, so a
#: retry must not sleep the layer's 5 s cap past the moment the new master is known
RETRY_CAP = 0.5
#: error replies that mean "the cluster is changing": retried like an unreachable node
_TRANSIENT = ("CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY", "MASTERDOWN")

_RETRY: tuple[type[BaseException], ...] = (*REDIS_DOWN_ERRORS, ConnectionError)

_SHARDED: dict[bytes, Script] = {}


def sharded(script: Script) -> Script:
    """The same script publishing with ``SPUBLISH`` (classic ``PUBLISH`` in a cluster goes to
    every node; a shard channel named by a key of the script stays in its slot)."""
    if script.sha not in _SHARDED:
        _SHARDED[script.sha] = Script(script.body.decode().replace("'PUBLISH'", "'SPUBLISH'"))
    return _SHARDED[script.sha]


class ClusterBroker(RedisBroker):
    """The broker on a Redis Cluster for one event loop (see the module docstring).

    It keeps :class:`~.redis_broker.RedisBroker`'s paths (the scripts, queue members, history,
    presence calls) and replaces where they run: each is sent to the master of its name's slot.
    Its own state replaces the parent's shard list (so the parent's ``__init__`` is not run):
    every method that used the shards is overridden here.
    """

    def __init__(
        self,
        config: LayerConfig,
        counters: Counters,
        on_frame: FrameCallback,
        capacity_of: Callable[[str], int],
    ) -> None:
        seeds = cluster_seeds([h.url for h in config.hosts])
        assert seeds is not None  # chosen for a cluster URL only
        self.seeds: ClusterSeeds = seeds
        self.config = config
        self.capacity_of = capacity_of
        self.counters = counters
        self.on_frame = on_frame
        self.keys = Keys(config.prefix)
        self.slots = SlotMap()
        self.nodes: dict[str, Shard] = {}
        self.subs = ShardedSubscriptions(
            self._node, self._on_pubsub, self._on_redirect, config, counters
        )
        self._pop_attempts: dict[str, int] = {}
        self._loading: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._suspect = asyncio.Event()
        self._closed = False

    # -- topology -------------------------------------------------------------------------------

    def _node(self, address: str) -> Shard:
        shard = self.nodes.get(address)
        if shard is None:
            host = HostConfig(self.seeds.node_url(address))
            shard = self.nodes[address] = Shard(len(self.nodes), host, self.config, self.counters)
        return shard

    async def _load(self) -> None:
        """Reload the slot map from the first node that answers (known masters, then seeds).

        Raises:
            ConfigError: a node answered that it is not in cluster mode.
            ConnectionError: no node answered.
        """
        errors = []
        for address in dict.fromkeys([*self.slots.nodes(), *self.seeds.addresses]):
            client = self._node(address).client
            try:
                async with asyncio.timeout(min(1.0, self.config.send_timeout)):
                    reply = await client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
            except REDIS_DOWN_ERRORS as exc:
                errors.append(f"{address}: {exc or type(exc).__name__}")
                continue
            except redis.exceptions.ResponseError as exc:
                if "cluster support disabled" in str(exc):
                    raise ConfigError(
                        f"{address} (in {self.seeds.describe()}) is not a Redis Cluster node: "
                        "use redis:// for a single Redis"
                    ) from exc
                errors.append(f"{address}: {exc}")
                continue
            if reply:
                self.slots.load(reply)
                return
            errors.append(f"{address}: no slots assigned")
        raise ConnectionError(f"no node of {self.seeds.describe()} answered ({'; '.join(errors)})")

    async def refresh(self) -> None:
        """Reload the map (concurrent callers share one reload) and move subscriptions."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.get_running_loop().create_task(self._load())
        try:
            await asyncio.shield(self._loading)
        finally:
            self.subs.place(self.slots)

    def _start_watch(self) -> None:
        if self._watch is None and not self._closed:
            self._watch = asyncio.get_running_loop().create_task(
                self._watching(), name="channels_scale cluster map watch"
            )

    async def _watching(self) -> None:
        # wakes every RETRY_INTERVAL to look (no I/O) for a reader that lost its node: a
        # process that only receives learns of a failover this way, not from a failed command
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETRY_INTERVAL):
                    await self._suspect.wait()
            now = loop.time()
            if self._suspect.is_set() or not self._healthy() or now - last >= REFRESH_INTERVAL:
                self._suspect.clear()
                last = now
                try:
                    await self.refresh()
                except (ConnectionError, ConfigError) as exc:
                    logger.warning("cluster map not reloaded: %s", exc)

    def _healthy(self) -> bool:
        return self.slots.loaded and self.subs.healthy()

    def _on_redirect(self) -> None:
        self._suspect.set()

    # -- subscriptions ------------------------------------------------------------------------

    def _want(self, channel: bytes) -> asyncio.Future[None] | None:
        self._start_watch()
        future = self.subs.want(channel, self.slots)
        if not self.subs.placed(channel):
            self._suspect.set()  # placed by the watch once the map is known
        return future

    async def _subscribed(self, channel: bytes) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.send_timeout
        while not self.slots.loaded and loop.time() < deadline:
            with contextlib.suppress(ConnectionError):
                await self.refresh()
            if not self.slots.loaded:
                await asyncio.sleep(RETRY_INTERVAL)
        self._want(channel)
        await self.subs.confirmed(channel)

    async def subscribe_inbox(self, inbox_id: str) -> None:
        flush = self.keys.flush_channel().encode()
        if flush not in self.subs.wanted:
            await self._subscribed(flush)
        await self._subscribed(self.keys.inbox(inbox_id).encode())

    def subscribe_group(self, group: str) -> asyncio.Future[None] | None:
        return self._want(self.keys.group(group).encode())

    async def wait_subscribed(self, group: str) -> None:
        await self._subscribed(self.keys.group(group).encode())

    def unsubscribe_group(self, group: str) -> None:
        self.subs.drop(self.keys.group(group).encode())

    def subscriptions(self) -> int:
        return len(self.subs)

    # -- commands on the slot's master ------------------------------------------------------

    async def _on_slot(
        self, key: bytes | str, what: str, run: Callable[[Shard, bool], Awaitable[Any]]
    ) -> Any:
        """``run(node, asking)`` on the master of ``key``'s slot, following redirects and
        retrying an unreachable or changing cluster for ``send_timeout``.

        Raises:
            LayerUnavailable: no answer for the whole ``send_timeout`` (names the node).
            redis.exceptions.ResponseError: any other error reply.
        """
        self._start_watch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.send_timeout
        slot = key_slot(key)
        attempt = 0
        asking: str | None = None
        where = self.seeds.describe()
        while True:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                    if not self.slots.loaded:
                        await self.refresh()
                    where = asking or self.slots.master(slot) or where
                    reply = await run(self._node(where), asking is not None)
                asking = None
                if type(reply) is not ReplyError:
                    return reply
                error = str(reply)
            except redis.exceptions.ResponseError as exc:  # from the redis-py pools
                asking = None
                error = str(exc)
                if isinstance(exc, redis.exceptions.AskError):  # MOVED is an AskError too
                    kind = "MOVED" if isinstance(exc, redis.exceptions.MovedError) else "ASK"
                    error = f"{kind} {exc.slot_id} {exc.node_addr}"
                elif isinstance(exc, redis.exceptions.BusyLoadingError):
                    error = "LOADING"
                elif isinstance(exc, redis.exceptions.ClusterDownError):
                    error = "CLUSTERDOWN"
                elif isinstance(exc, redis.exceptions.TryAgainError):  # prefix stripped
                    error = f"TRYAGAIN {exc}"
            except _RETRY as exc:
                asking = None
                error = f"{where}: {exc or type(exc).__name__}"
                self._suspect.set()
                await self._backoff(what, error, deadline, attempt)
                attempt += 1
                continue
            redirect = _redirect(error)
            if redirect is not None:
                kind, _, address = redirect
                if kind == "MOVED":
                    self.slots.moved(slot, address)
                    self._suspect.set()
                else:
                    asking = address
                if attempt < 5:  # a redirect is followed at once, a loop of them backs off
                    attempt += 1
                    continue
            if redirect is None and not error.startswith(_TRANSIENT):
                raise redis.exceptions.ResponseError(error)
            self._suspect.set()
            await self._backoff(what, f"{where}: {error}", deadline, attempt)
            attempt += 1

    async def _backoff(self, what: str, error: str, deadline: float, attempt: int) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            self.counters.send_failed += 1
            raise LayerUnavailable(
                f"{what}: Redis Cluster {self.seeds.describe()} unavailable for "
                f"{self.config.send_timeout:g} s ({error})"
            )
        self.counters.send_retries += 1
        delay = full_jitter(
            attempt, self.config.backoff_base, min(self.config.backoff_cap, RETRY_CAP)
        )
        await asyncio.sleep(min(delay, remaining))

    # -- RedisBroker's paths, run on the master of the name's slot --------------------------
    # Every key of a name carries it as its hash tag, so "{name}" hashes to the keys' slot.

    PUBLISH = b"SPUBLISH"

    async def _execute(self, name: str, what: str, *args: bytes | str | int | float) -> Any:
        return await self._command(f"{{{name}}}", what, *args)

    async def _command(self, key: str, what: str, *args: bytes | str | int | float) -> Any:
        data = encode(*args)

        async def run(node: Shard, asking: bool) -> Any:
            if asking:  # ASKING applies to the next command of the same connection
                async with node.client.pipeline(transaction=False) as pipe:
                    pipe.execute_command("ASKING")
                    pipe.execute_command(*args)
                    results = await pipe.execute(raise_on_error=False)
                if isinstance(results[1], redis.exceptions.ResponseError):
                    raise results[1]
                return results[1]
            reply = await node.pipe.request(data)
            return reply

        return await self._on_slot(key, what, run)

    async def _script(
        self, name: str, what: str, script: Script, keys: list[bytes | str], args: list[Any]
    ) -> Any:
        script = sharded(script)
        key = f"{{{name}}}"
        try:
            return await self._command(key, what, b"EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self._command(key, what, b"EVAL", script.body, len(keys), *keys, *args)

    async def _call(self, name: str, operation: Callable[[Redis], Awaitable[T]], what: str) -> T:
        async def run(node: Shard, asking: bool) -> Any:
            return await operation(node.client)

        result: T = await self._on_slot(f"{{{name}}}", what, run)
        return result

    async def _blocking_pop(self, channel: str) -> Any:
        key = self.keys.queue(channel)

        async def run(node: Shard, asking: bool) -> Any:
            return await node.blocking_client.blpop([key], timeout=BLOCKING_POP_TIMEOUT)

        try:
            return await self._on_slot(key, "queue pop", run)
        except LayerUnavailable as exc:
            raise ConnectionError(str(exc)) from exc  # waited out by queue_pop, never raised

    async def flush(self, notice: bytes) -> None:
        """Unlink the prefix' keys on every master (one key per command: keys of several slots
        cannot go in one), then one ``SPUBLISH`` of the notice on the flush channel's slot."""
        if not self.slots.loaded:
            await self.refresh()
        pattern = self.keys.pattern()

        async def unlink_all(client: Redis) -> None:
            async for key in client.scan_iter(match=pattern, count=1000):
                await client.unlink(key)

        for address in self.slots.nodes():
            # any key of the node's slots routes there: scan the node itself
            node = self._node(address)
            await node.call(unlink_all, "flush")
        channel = self.keys.flush_channel()
        await self._command(channel, "flush", self.PUBLISH, channel, notice)

    async def aclose(self) -> None:
        self._closed = True
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        await self.subs.aclose()
        for node in self.nodes.values():
            await node.aclose()
