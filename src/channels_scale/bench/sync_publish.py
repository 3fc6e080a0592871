"""Publishing from sync code: ``channels_scale.publish`` against ``async_to_sync(group_send)``.

One run, one private redis-server, plain threads (what a sync view, a signal handler or a Celery
task is: a thread with no event loop)::

    uv run python -m channels_scale.bench.sync_publish            # ~1 min
    uv run python -m channels_scale.bench.sync_publish --calls 1000 --threads 1,8

For each layer (ours; channels_redis' core layer; channels_redis' pub/sub layer), each way of
publishing (``publish``: :func:`channels_scale.publish`, one long-lived loop thread per process;
``async_to_sync``: ``async_to_sync(get_channel_layer().group_send)``, the usual recipe) and each
number of publishing threads, ``--calls`` group messages are published (split over the threads;
every thread waits for each call, as a view does) to a group with no member: the figures are the
publisher's cost alone. Reported per case:

- publishes/s: calls / wall time;
- client CPU µs per publish: CPU time of this whole process (every thread: callers, the publisher
  thread, asgiref's loop threads) / calls;
- Redis CPU µs per publish: redis-server's ``INFO cpu`` delta / calls;
- loops made: event loops created during the case (``async_to_sync`` outside a loop makes one per
  call, and with it new connections for per-loop layers).

A few warm-up calls per case run first (connections, the publisher thread).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import django
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from channels_scale.layer.microbench import POOL_WORKAROUND, start_redis

LAYERS = ("ours", "core", "pubsub")
WAYS = ("publish", "async_to_sync")
HEADER = (
    "| layer | way | threads | calls | publishes/s | client CPU µs / publish "
    "| Redis CPU µs / publish | loops made |\n|---|---|---:|---:|---:|---:|---:|---:|"
)


def layer_settings(url: str) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` with one alias per compared layer, all on ``url``."""
    hosts = [{"address": url, **POOL_WORKAROUND}]
    return {
        "ours": {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": "ours"},
        },
        "core": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": hosts, "prefix": "core"},
        },
        "pubsub": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": hosts, "prefix": "pubsub"},
        },
    }


class LoopCounter:
    """Counts event loops created while installed (a wrapper around ``BaseEventLoop.__init__``;
    the only way to see asgiref's per-call loops from outside)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._original = asyncio.BaseEventLoop.__init__

    def __enter__(self) -> LoopCounter:
        original = self._original
        counter = self

        def counting(loop: asyncio.BaseEventLoop) -> None:
            with counter._lock:
                counter.count += 1
            original(loop)

        asyncio.BaseEventLoop.__init__ = counting  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.BaseEventLoop.__init__ = self._original  # type: ignore[method-assign]


@dataclass
class Result:
    layer: str
    way: str
    threads: int
    calls: int
    per_s: float
    client_us: float
    redis_us: float
    loops: int

    def row(self) -> str:
        return (
            f"| {self.layer} | {self.way} | {self.threads} | {self.calls:,} | {self.per_s:,.0f} "
            f"| {self.client_us:.0f} | {self.redis_us:.0f} | {self.loops:,} |"
        )


def caller(layer: str, way: str) -> Callable[[dict[str, Any]], None]:
    """One publish, the way under test."""
    from channels.layers import get_channel_layer

    import channels_scale

    if way == "publish":
        return lambda message: channels_scale.publish("bench", message, alias=layer)
    group_send = get_channel_layer(layer).group_send
    return lambda message: async_to_sync(group_send)("bench", message)


def redis_cpu(client: redis.Redis) -> float:
    info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_case(client: redis.Redis, layer: str, way: str, threads: int, calls: int) -> Result:
    call = caller(layer, way)
    for n in range(5):  # warm-up: connections, the publisher thread
        call({"type": "bench.message", "n": -n})
    each = calls // threads
    start = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        start.wait()
        for n in range(each):
            call({"type": "bench.message", "t": t, "n": n})

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    with LoopCounter() as loops:
        cpu0, redis0, wall0 = time.process_time(), redis_cpu(client), time.perf_counter()
        start.wait()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - wall0
        cpu, redis_used = time.process_time() - cpu0, redis_cpu(client) - redis0
    total = each * threads
    return Result(
        layer, way, threads, total, total / wall, cpu / total * 1e6, redis_used / total * 1e6,
        loops.count,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m channels_scale.bench.sync_publish")
    parser.add_argument("--layers", type=lambda s: s.split(","), default=list(LAYERS))
    parser.add_argument("--ways", type=lambda s: s.split(","), default=list(WAYS))
    parser.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    parser.add_argument("--calls", type=int, default=2000, help="publishes per case")
    args = parser.parse_args(argv)
    for name in args.layers:
        if name not in LAYERS:
            parser.error(f"unknown layer {name!r} (choose from {', '.join(LAYERS)})")
    for name in args.ways:
        if name not in WAYS:
            parser.error(f"unknown way {name!r} (choose from {', '.join(WAYS)})")
    with tempfile.TemporaryDirectory() as workdir:
        server, url = start_redis(workdir)
        try:
            settings.configure(CHANNEL_LAYERS=layer_settings(url))
            django.setup()
            client = redis.Redis.from_url(url)
            print(f"python -m channels_scale.bench.sync_publish {' '.join(argv)}".rstrip())
            print(HEADER, flush=True)
            for layer in args.layers:
                for way in args.ways:
                    for threads in args.threads:
                        print(run_case(client, layer, way, threads, args.calls).row(), flush=True)
            client.close()
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
