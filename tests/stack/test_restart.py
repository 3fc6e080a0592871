"""``channels-scale restart --rolling`` under steady traffic: no message lost, few disconnected.

Real stack (supervisor, nginx or HAProxy, 2 uvicorn workers, redis-server) running
``checks_project``, whose rooms keep history. Clients behave as ``client.js``: on a close they
reconnect (after a short random backoff) with ``?epoch=E&offset=N``, their last position, and the
consumer replays what they missed. A publisher in the test process writes numbered messages to
the room's stream at a steady rate while every worker is restarted one at a time. Every client
must end with every message exactly once, in order, and at no moment may more than 1/N of the
clients be disconnected.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from channels_scale.history.consumer import publish
from channels_scale.layer import RedisChannelLayer
from channels_scale.net import free_port, timeout_factor
from tests.stack.stackclients import CHECKS, open_websockets, project_env
from tests.stackrunner import CLI, RunningStack

pytestmark = pytest.mark.e2e
#: The private Redis needs a password; the test publishes to it as the workers do.
REDIS_PASSWORD = "restart-test"
WORKERS = 2
CLIENTS = 12
RATE_PER_S = 50
WAIT = 10 * timeout_factor()


@dataclass
class Disconnections:
    """How many clients are disconnected right now, and the most at once."""

    now: int = 0
    most: int = 0

    def down(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def up(self) -> None:
        self.now -= 1


@dataclass
class ResumingClient:
    """A client that resumes from its last (epoch, offset) after every close."""

    url: str
    tracker: Disconnections
    numbers: list[int] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    reloads: int = 0
    epoch: str = ""
    offset: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    wanted: int | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def want(self, count: int) -> None:
        self.wanted = count
        if len(self.numbers) >= count:
            self.complete.set()

    async def run(self) -> None:
        while not self.stopping:
            query = f"?epoch={self.epoch}&offset={self.offset}" if self.epoch else ""
            try:
                ws = await connect(self.url + query, open_timeout=WAIT)
            except (OSError, TimeoutError, ConnectionClosed, Exception):
                await asyncio.sleep(random.uniform(0, 0.2))  # full-jitter backoff
                continue
            if self.connected.is_set():
                self.tracker.up()
            self.connected.set()
            try:
                async for raw in ws:
                    self._frame(json.loads(raw))
            except ConnectionClosed:
                pass
            self.close_codes.append(ws.close_code)
            if self.stopping:
                return
            self.tracker.down()
            await asyncio.sleep(random.uniform(0, 0.05))

    def _frame(self, frame: dict[str, Any]) -> None:
        if "data" in frame:
            self.numbers.append(frame["data"]["n"])
            if self.wanted is not None and len(self.numbers) >= self.wanted:
                self.complete.set()
            self.epoch, self.offset = frame["epoch"], frame["offset"]
        elif frame.get("type") == "reload":
            self.reloads += 1
            self.epoch, self.offset = frame["epoch"], frame["offset"]


async def _publish(layer: RedisChannelLayer, stop: asyncio.Event) -> int:
    count = 0
    while not stop.is_set():
        count += 1
        await publish(layer, "room.steady", {"n": count})
        await asyncio.sleep(1 / RATE_PER_S)
    return count


@pytest.mark.parametrize("lb", ["nginx", "haproxy"])
async def test_rolling_restart_loses_nothing(tmp_path: Path, lb: str) -> None:
    stack = RunningStack(
        ["--app", "checks.asgi:application", "--pythonpath", str(CHECKS), "--ready-path", "/ok/",
         "--workers", str(WORKERS), "--lb", lb, "--redis-password", REDIS_PASSWORD],
        project_env(), tmp_path / "run", free_port(),
    )  # fmt: skip
    tasks: list[asyncio.Task[None]] = []
    layer: RedisChannelLayer | None = None
    try:
        stack.wait_up()
        state = json.loads((tmp_path / "run" / "stack.json").read_text())
        tracker = Disconnections()
        clients = [
            ResumingClient(f"{stack.ws_url}/ws/room/steady/", tracker) for _ in range(CLIENTS)
        ]
        tasks = [asyncio.create_task(c.run()) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), WAIT)
        assert min(open_websockets(stack.run_dir, WORKERS)) > 0, "premise: clients spread"

        layer = RedisChannelLayer(
            hosts=[state["redis_url"].replace("***", REDIS_PASSWORD)],
            history={"room.*": {"size": 100_000, "ttl": 600}},
        )
        stop = asyncio.Event()
        publisher = asyncio.create_task(_publish(layer, stop))
        started = time.monotonic()
        restart = await asyncio.create_subprocess_exec(
            CLI, "restart", "--rolling", "--run-dir", str(stack.run_dir),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output = (await asyncio.wait_for(restart.communicate(), 120 * timeout_factor()))[0]
        seconds = time.monotonic() - started
        assert restart.returncode == 0, output.decode()
        await asyncio.sleep(0.5)  # steady traffic goes on after the restart too
        stop.set()
        sent = await publisher

        for client in clients:
            client.want(sent)
        await asyncio.wait_for(asyncio.gather(*(c.complete.wait() for c in clients)), WAIT)
        lost = sum(len(set(range(1, sent + 1)) - set(c.numbers)) for c in clients)
        figures = (
            f"rolling restart ({lb}, {WORKERS} workers, {CLIENTS} resuming clients, "
            f"{RATE_PER_S} msg/s): {sent} messages sent to each client, {lost} lost, "
            f"max {tracker.most} disconnected at once (limit {CLIENTS // WORKERS}), "
            f"{seconds:.1f} s in all; " + output.decode().strip().replace("\n", "; ")
        )
        print(figures, file=sys.stderr)
        for client in clients:
            assert client.numbers == list(range(1, sent + 1)), "lost, duplicated or reordered"
            assert client.reloads == 0
            assert 1012 in client.close_codes, client.close_codes
        assert tracker.most <= CLIENTS // WORKERS, figures
        assert lost == 0
    finally:
        for client_task in tasks:
            client_task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if layer is not None:
            await layer.close()
        assert stack.stop() == 0
