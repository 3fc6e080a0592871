"""Layer micro-benchmark: ``group_send`` fan-out, no websockets.

Compares, in one run and on one private redis-server, our layer, channels_redis' core layer (with
the recipe's workaround pool options) and channels_redis' pub/sub layer::

    uv run python -m channels_scale.layer.microbench            # full matrix, ~3-5 min
    uv run python -m channels_scale.layer.microbench --members 100 --procs 1 --layers ours,core

For each layer, group size (members) and number of receiving processes, the receiving processes
create their channels with ``new_channel()``, join one group, and consume with one task per
channel (the shape of Channels consumers); this process then awaits ``group_send`` N times in a
row. Reported per case:

- deliveries/s: messages received by all members / (last receive - first send);
- Redis commands per group_send: ``INFO commandstats`` calls delta (every client, receivers
  included, ``INFO`` itself excluded) / N;
- CPU ms per 1,000 deliveries: CPU time of the sender, of the receivers (from their ``ready``)
  and of redis-server (``INFO cpu``) / deliveries * 1000, in total and split into those three.

N is capped so that slow cases finish (``--budget`` deliveries per case; the core layer gets a
tenth of it); the table shows the N used. Members are spread evenly over the processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from channels_scale.net import free_port, wait_until

LAYERS = ("ours", "core", "pubsub")
POOL_WORKAROUND = {"socket_timeout": None, "max_connections": 10_000}


def make_layer(name: str, url: str, prefix: str, capacity: int) -> Any:
    """A layer instance by short name."""
    if name == "ours":
        from channels_scale.layer import RedisChannelLayer

        return RedisChannelLayer(hosts=[url], prefix=prefix, capacity=capacity)
    if name == "core":
        from channels_redis.core import RedisChannelLayer as CoreLayer

        hosts = [{"address": url, **POOL_WORKAROUND}]
        return CoreLayer(hosts=hosts, prefix=prefix, capacity=capacity)
    if name == "pubsub":
        from channels_redis.pubsub import RedisPubSubChannelLayer

        return RedisPubSubChannelLayer(hosts=[{"address": url, **POOL_WORKAROUND}], prefix=prefix)
    raise ValueError(f"unknown layer {name!r}: choose from {', '.join(LAYERS)}")


# -- receiving process ----------------------------------------------------------------------


async def receiver(spec: dict[str, Any]) -> None:
    """Join ``members`` channels to the group, print ``ready``, consume, print the result."""
    layer = make_layer(spec["layer"], spec["url"], spec["prefix"], spec["messages"] + 10)
    channels = [await layer.new_channel() for _ in range(spec["members"])]
    for channel in channels:
        await layer.group_add(spec["group"], channel)
    count = 0
    last = 0.0
    expected = spec["messages"] * len(channels)
    finished = asyncio.Event()
    cpu0 = time.process_time()
    print("ready", flush=True)

    async def consume(channel: str) -> None:
        nonlocal count, last
        for _ in range(spec["messages"]):
            await layer.receive(channel)
            count += 1
            last = time.time()
        if count >= expected:
            finished.set()

    tasks = [asyncio.ensure_future(consume(c)) for c in channels]
    deadline = time.monotonic() + spec["timeout"]
    # stop at completion, at the deadline, or after 3 s without a delivery once started
    while not finished.is_set() and time.monotonic() < deadline:
        try:
            async with asyncio.timeout(0.2):
                await finished.wait()
        except TimeoutError:
            if last and time.time() - last > 3:
                break
    cpu = time.process_time() - cpu0
    for task in tasks:
        task.cancel()
    print("done", json.dumps({"count": count, "last": last, "cpu": cpu}), flush=True)
    os._exit(0)  # do not wait for layers' background tasks


# -- orchestration ---------------------------------------------------------------------------


@dataclass
class Result:
    layer: str
    members: int
    procs: int
    messages: int
    deliveries: int
    rate: float
    commands: float
    cpu_ms: float
    sender_ms: float = 0.0
    receivers_ms: float = 0.0
    redis_ms: float = 0.0

    def row(self) -> str:
        expected = self.members * self.messages
        lost = f" ({expected - self.deliveries} missing)" if self.deliveries < expected else ""
        return (
            f"| {self.layer} | {self.members:,} | {self.procs} | {self.messages:,} | "
            f"{self.deliveries:,}{lost} | {self.rate:,.0f} | {self.commands:.1f} | "
            f"{self.cpu_ms:.1f} | {self.sender_ms:.1f} / {self.receivers_ms:.1f} / "
            f"{self.redis_ms:.1f} |"
        )


HEADER = (
    "| layer | members | procs | group_sends | deliveries | deliveries/s "
    "| Redis cmds / group_send | CPU ms / 1k deliveries | sender / receivers / redis |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


async def redis_counters(client: redis.asyncio.Redis) -> tuple[int, float]:
    stats = await client.info("commandstats")
    calls = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")
    cpu = await client.info("cpu")
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def run_case(
    layer_name: str, url: str, members: int, procs: int, messages: int, case_timeout: float
) -> Result:
    client = redis.asyncio.Redis.from_url(url)
    await client.flushall()
    prefix = f"mb{layer_name}"
    group = "bench"
    procs = min(procs, members)
    shares = [members // procs + (1 if i < members % procs else 0) for i in range(procs)]
    spec = {"layer": layer_name, "url": url, "prefix": prefix, "group": group,
            "messages": messages, "timeout": case_timeout}  # fmt: skip
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "channels_scale.layer.microbench", "_receiver",
            json.dumps({**spec, "members": share}),
            stdout=asyncio.subprocess.PIPE,
        )
        for share in shares
    ]  # fmt: skip
    sender = make_layer(layer_name, url, prefix, messages + 10)
    try:
        for child in children:
            assert child.stdout is not None
            async with asyncio.timeout(120):
                line = await child.stdout.readline()
            if not line.startswith(b"ready"):
                raise RuntimeError(f"receiver failed to start for {layer_name}")
        calls0, redis_cpu0 = await redis_counters(client)
        cpu0 = time.process_time()
        start = time.time()
        for i in range(messages):
            await sender.group_send(group, {"type": "bench.message", "n": i, "text": "x" * 64})
        sender_cpu = time.process_time() - cpu0
        results = []
        for child in children:
            assert child.stdout is not None
            async with asyncio.timeout(case_timeout + 30):
                line = await child.stdout.readline()
            results.append(json.loads(line.split(b" ", 1)[1]))
        calls1, redis_cpu1 = await redis_counters(client)
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
            await child.wait()
        await client.aclose()
    deliveries = sum(r["count"] for r in results)
    last = max((r["last"] for r in results), default=start)
    elapsed = max(last - start, 1e-9)
    receivers_cpu = sum(r["cpu"] for r in results)
    redis_cpu = redis_cpu1 - redis_cpu0
    per_1k = 1000 * 1000 / max(deliveries, 1)
    return Result(
        layer_name, members, procs, messages, deliveries,
        deliveries / elapsed if deliveries else 0.0,
        (calls1 - calls0) / messages,
        (sender_cpu + receivers_cpu + redis_cpu) * per_1k,
        sender_cpu * per_1k, receivers_cpu * per_1k, redis_cpu * per_1k,
    )  # fmt: skip


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--maxclients", "20000", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def answers() -> bool:
        try:
            return bool(subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, timeout=2
            ).stdout.startswith(b"PONG"))  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return False

    if not wait_until(answers, 10):
        proc.kill()
        raise RuntimeError("redis-server did not start")
    return proc, f"redis://127.0.0.1:{port}/0"


def message_count(layer: str, members: int, budget: int) -> int:
    """group_sends for a case: ``budget`` deliveries (a tenth for the core layer), 3..2000."""
    if layer == "core":
        budget //= 10
    return max(3, min(2000, budget // members))


async def main_async(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as workdir:
        server, url = start_redis(workdir)
        try:
            for members in args.members:
                for procs in args.procs:
                    for layer in args.layers:
                        messages = message_count(layer, members, args.budget)
                        result = await run_case(
                            layer, url, members, procs, messages, args.case_timeout
                        )
                        results.append(result)
                        print(result.row(), flush=True)
        finally:
            server.kill()
            server.wait()
    return results


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_receiver":
        asyncio.run(receiver(json.loads(argv[1])))
        return
    parser = argparse.ArgumentParser(prog="python -m channels_scale.layer.microbench")

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",")]

    parser.add_argument("--layers", type=lambda s: s.split(","), default=list(LAYERS))
    parser.add_argument("--members", type=ints, default=[1, 100, 10_000])
    parser.add_argument("--procs", type=ints, default=[1, 4])
    parser.add_argument("--budget", type=int, default=100_000, help="deliveries per case")
    parser.add_argument("--case-timeout", type=float, default=60.0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    for layer in args.layers:
        if layer not in LAYERS:
            parser.error(f"unknown layer {layer!r}")
    print(f"python -m channels_scale.layer.microbench {' '.join(argv)}".rstrip())
    print(HEADER, flush=True)
    results = asyncio.run(main_async(args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump([r.__dict__ for r in results], out, indent=2)


if __name__ == "__main__":
    main()
