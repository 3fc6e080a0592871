"""The Channels tutorial's chat project, not our example, under ``channels-scale up --workers 2``.

Its settings point ``CHANNEL_LAYERS`` at ``channels_redis`` on 127.0.0.1:6379 and are not edited:
``up`` runs the workers' layer on the stack's own Redis (stack/overlay.py), and a message sent by
a client on one worker reaches a client on the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from channels_scale.net import free_port, timeout_factor, wait_until
from channels_scale.stack.health import worker_health
from tests.stack.stackclients import TUTORIAL, open_websockets, project_env
from tests.stackrunner import RunningStack, run_cli

pytestmark = pytest.mark.e2e
WAIT = 10 * timeout_factor()


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _health(stack: RunningStack, worker: int) -> dict[str, Any]:
    health = worker_health(stack.run_dir.resolve() / "sockets" / f"worker-{worker}.sock")
    assert health is not None
    return health


async def _deliver_across_workers(stack: RunningStack, url: str) -> None:
    """A client on worker 0 and one on worker 1; each one's message reaches the other."""
    origin = f"http://127.0.0.1:{stack.port}"  # AllowedHostsOriginValidator wants one
    on_worker: dict[int, ClientConnection] = {}
    extra: list[ClientConnection] = []
    # Connect one client at a time and see which worker took it (least connections).
    for _ in range(6):
        counts = open_websockets(stack.run_dir, 2)
        client = await connect(url, origin=origin, open_timeout=WAIT)  # type: ignore[arg-type]
        assert wait_until(lambda c=counts: open_websockets(stack.run_dir, 2) != c, 10)  # type: ignore[misc]
        now = open_websockets(stack.run_dir, 2)
        worker = next(w for w in (0, 1) if now[w] > counts[w])
        if worker in on_worker:
            extra.append(client)  # kept open so the next one goes to the other worker
        else:
            on_worker[worker] = client
        if len(on_worker) == 2:
            break
    assert set(on_worker) == {0, 1}, "clients did not land on both workers"

    await on_worker[0].send(json.dumps({"message": "from worker 0"}))
    got = await asyncio.wait_for(on_worker[1].recv(), WAIT)
    assert json.loads(got) == {"message": "from worker 0"}
    await on_worker[1].send(json.dumps({"message": "from worker 1"}))
    while json.loads(await asyncio.wait_for(on_worker[0].recv(), WAIT)) != {
        "message": "from worker 1"
    }:
        pass
    for client in [*on_worker.values(), *extra]:
        await client.close()


async def test_tutorial_chat_delivers_across_two_workers(tmp_path: Path) -> None:
    before = _tree_digest(TUTORIAL)
    stack = RunningStack(
        ["--app", "mysite.asgi:application", "--pythonpath", str(TUTORIAL), "--workers", "2"],
        project_env(), tmp_path / "run", free_port(),
    )  # fmt: skip
    try:
        stack.wait_up()
        output = "".join(stack.output)
        state = json.loads((tmp_path / "run" / "stack.json").read_text())
        assert ":6379/" not in state["redis_url"], "the premise: the stack's Redis is its own"
        assert f"channels_scale on the stack's Redis {state['redis_url']}" in output, output
        assert "mysite.settings: channels_redis.core.RedisChannelLayer on 127.0.0.1:6379" in output

        url = f"{stack.ws_url}/ws/chat/lobby/"
        await _deliver_across_workers(stack, url)

        # `restart` (all at once) gives new workers; the project still delivers across them.
        # A client left open is closed by uvicorn's own shutdown (SIGTERM): with 1012.
        held = await connect(url, origin=f"http://127.0.0.1:{stack.port}", open_timeout=WAIT)  # type: ignore[arg-type]
        pids = [h["pid"] for h in (_health(stack, 0), _health(stack, 1))]
        done = run_cli("restart", "--run-dir", str(stack.run_dir))
        assert done.returncode == 0, done.stderr
        assert "restarted 2 workers at once" in done.stdout
        await asyncio.wait_for(held.wait_closed(), WAIT)
        assert held.close_code == 1012
        assert all(_health(stack, w)["pid"] != pids[w] for w in (0, 1))
        await _deliver_across_workers(stack, url)
    finally:
        assert stack.stop() == 0
    assert _tree_digest(TUTORIAL) == before, "the project's files were edited"
