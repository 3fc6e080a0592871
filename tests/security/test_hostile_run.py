"""The hostile-input run (issue 13, item 8): ≥ 10,000 generated inputs against a live stack.

``channels-scale up --workers 2`` (nginx, uvicorn, Redis), canary clients broadcasting throughout,
and every input of :mod:`tests.security.hostile` sent through nginx, 16 connections at a time,
with the chat endpoint's inputs (:mod:`tests.security.chatprobes`) 3 connections at a time beside
them. Each input must get its documented answer (docs/security.md), both workers must keep their
pids and log no traceback, every refusal must be counted in ``/healthz``, every echoed chat
message must be stored, and the canaries must lose nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from channels_scale.net import timeout_factor
from channels_scale.stack.health import worker_health
from tests.conftest import EXAMPLE
from tests.security import chatprobes, hostile, strategies
from tests.security.chatprobes import ChatConnection, Tokens
from tests.security.flood import canaries, cpu_seconds, fragment_flood
from tests.security.hostile import Probe, Tally
from tests.security.rawws import RawSocket
from tests.stackrunner import RunningStack

pytestmark = pytest.mark.e2e

SEED = 13
#: Session items per connection: many inputs per handshake keeps the run short.
PER_SESSION = 75
COUNTS = {
    "session": 7_500,
    "oversize": 150,
    "invalid_utf8": 300,
    "protocol": 450,
    "fragment_flood": 150,
    "ping_flood": 150,
    "origin": 450,
    "host": 450,
    "path": 300,
    "query": 300,
}
#: Inputs at the chat endpoint (tests.security.chatprobes).
CHAT_COUNTS = {
    "chat_message": 1_200,
    "chat_long": 150,
    "chat_ping": 150,
    "chat_json": 200,
    "chat_nested": 100,
    "chat_surrogate": 100,
    "chat_binary": 60,
}
CHAT_FLOODS = 30
CHAT_TOKENS = 300
CHAT_NON_MEMBERS = 100
#: Users sending frames (a chat user may send 120 a minute), flooders, private rooms' owner.
USERS = [f"h{n}" for n in range(40)]
FLOODERS = [f"f{n}" for n in range(20)]
PRIVATE_ROOMS = 10
CONCURRENCY = 16
#: Chat connections at a time, beside the others (each costs a worker database and Redis work).
CHAT_CONCURRENCY = 3
WAIT = 10 * timeout_factor()
SPOOFED = "203.0.113.66"
FLOOD_SECONDS = 2.0


def _probes() -> tuple[list[list[Probe]], list[Probe], list[Probe]]:
    items = strategies.draw(strategies.session_items, COUNTS["session"], SEED)
    session_probes = [hostile.session_probe(item) for item in items]
    sessions = [
        session_probes[i : i + PER_SESSION] for i in range(0, len(session_probes), PER_SESSION)
    ]
    terminal = hostile.terminal_probes(
        strategies.draw(strategies.oversize, COUNTS["oversize"], SEED),
        strategies.draw(strategies.invalid_utf8, COUNTS["invalid_utf8"], SEED),
        strategies.draw(strategies.protocol, COUNTS["protocol"], SEED),
        strategies.draw(strategies.floods, COUNTS["fragment_flood"], SEED),
        strategies.draw(strategies.ping_floods, COUNTS["ping_flood"], SEED),
    )
    handshakes = [
        Probe("origin", origin, expected)
        for origin, expected in strategies.draw(strategies.origins, COUNTS["origin"], SEED)
    ]
    handshakes += [
        Probe("host", host, expected)
        for host, expected in strategies.draw(strategies.hosts, COUNTS["host"], SEED)
    ]
    handshakes += [
        Probe("path", path, hostile.UNMATCHED_PATH)
        for path in strategies.draw(strategies.paths, COUNTS["path"], SEED)
    ]
    handshakes += [
        Probe("query", query, "HTTP 101")
        for query in strategies.draw(strategies.queries, COUNTS["query"], SEED)
    ]
    return sessions, terminal, handshakes


# Migrates the stack's database and creates the users: the frame senders and flooders, one
# inactive user, and "owner", only member of the private rooms. Prints {username: pk}.
SETUP = """
import json, sys, django
django.setup()
from django.core.management import call_command
from django.contrib.auth.models import User
from chat.models import Room
call_command("migrate", verbosity=0)
owner = User.objects.create_user("owner")
for n in range(int(sys.argv[1])):
    Room.objects.create(name=f"private-{n}").members.add(owner)
User.objects.create_user("inactive", is_active=False)
ids = {name: User.objects.create_user(name).pk for name in sys.argv[2:]}
print(json.dumps({**ids, "inactive": User.objects.get(username="inactive").pk}))
"""


def _chat_users(env: dict[str, str]) -> dict[str, int]:
    created = subprocess.run(
        [sys.executable, "-c", SETUP, str(PRIVATE_ROOMS), *USERS, *FLOODERS],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    ids: dict[str, int] = json.loads(created.stdout)
    return ids


def _chat_probes() -> tuple[list[ChatConnection], list[Probe], list[Probe], list[Probe]]:
    frames = [
        chatprobes.frame_probe(kind, item)
        for kind, strategy in strategies.CHAT_FRAMES.items()
        for item in strategies.draw(strategy, CHAT_COUNTS[kind], SEED)
    ]
    random.Random(SEED).shuffle(frames)
    connections = chatprobes.plan(frames, USERS)
    floods = [
        Probe("chat_flood", extra, "close 4429", also=(hostile.RESET,))
        for extra in strategies.draw(strategies.chat_floods, CHAT_FLOODS, SEED)
    ]
    tokens = [
        Probe("chat_token", description, "close 4401")
        for description in strategies.draw(strategies.bad_tokens, CHAT_TOKENS, SEED)
    ]
    members = [
        Probe("chat_member", pair, "close 4403")
        for pair in strategies.draw(strategies.non_members, CHAT_NON_MEMBERS, SEED)
    ]
    return connections, floods, tokens, members


def _chat_jobs(
    port: int, tokens: Tokens, connections: list[ChatConnection], floods: list[Probe],
    bad_tokens: list[Probe], members: list[Probe],
) -> list[Any]:  # fmt: skip
    """Every chat input as a job; each connection to a room of its own (created on connect)."""
    jobs: list[Any] = [
        (lambda c=c, n=n: chatprobes.run_chat(port, c, f"c{n}", tokens, WAIT))
        for n, c in enumerate(connections)
    ]
    jobs += [
        (
            lambda p=p, n=n: chatprobes.run_flood(
                port, p, FLOODERS[n % len(FLOODERS)], f"flood{n}", tokens, WAIT
            )
        )
        for n, p in enumerate(floods)
    ]
    for probe in bad_tokens:
        query = tokens.bad_query(probe.data)
        path = "/ws/chat/lobby/" + (f"?{query}" if query else "")
        jobs.append(lambda p=probe, path=path: chatprobes.run_handshake(port, p, path, WAIT))
    for probe in members:
        user, room = USERS[probe.data[0] % len(USERS)], probe.data[1] % PRIVATE_ROOMS
        query = "token=" + tokens.valid(user)
        path = f"/ws/chat/private-{room}/?{query}"
        jobs.append(lambda p=probe, path=path: chatprobes.run_handshake(port, p, path, WAIT))
    return jobs


def _stored_messages(env: dict[str, str]) -> int:
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        count: int = db.execute("SELECT COUNT(*) FROM chat_message").fetchone()[0]
    return count


def _health(stack: RunningStack) -> list[dict[str, Any]]:
    found = []
    for worker in (0, 1):
        health = worker_health(stack.run_dir.resolve() / "sockets" / f"worker-{worker}.sock")
        assert health is not None, f"worker {worker} does not answer /healthz"
        found.append(health)
    return found


async def test_hostile_inputs_get_their_documented_answers(
    start_stack: Any, example_env: dict[str, str]
) -> None:
    # The stack's SECRET_KEY, known to the test so that it can issue tokens (start_stack runs
    # the stack with example_env).
    example_env["SECRET_KEY"] = secrets.token_urlsafe(50)
    tokens = Tokens(example_env["SECRET_KEY"], _chat_users(example_env))
    stack: RunningStack = start_stack("--workers", "2", "--lb", "nginx")
    port = stack.port
    before = _health(stack)
    sessions, terminal, handshakes = _probes()
    connections, floods, bad_tokens, members = _chat_probes()

    jobs: list[Any] = [
        (lambda s=session, n=n: hostile.run_session(port, f"h{n}", s, WAIT))
        for n, session in enumerate(sessions)
    ]
    jobs += [(lambda p=p: hostile.run_terminal(port, p, WAIT)) for p in terminal]
    jobs += [(lambda p=p: hostile.run_handshake(port, p, WAIT)) for p in handshakes]
    chat_jobs = _chat_jobs(port, tokens, connections, floods, bad_tokens, members)
    random.Random(SEED).shuffle(jobs)  # floods interleaved with everything else
    random.Random(SEED).shuffle(chat_jobs)

    stop, ready = asyncio.Event(), asyncio.Event()
    canary_task = asyncio.create_task(canaries(port, "canary", 10, stop, ready=ready))
    await asyncio.wait_for(ready.wait(), WAIT)
    started = time.monotonic()
    cpu_start = sum(cpu_seconds(h["pid"]) for h in before)
    runs = asyncio.gather(
        hostile.bounded(jobs, CONCURRENCY), hostile.bounded(chat_jobs, CHAT_CONCURRENCY)
    )
    await asyncio.wait_for(runs, 240 * timeout_factor())
    elapsed = time.monotonic() - started
    inputs_cpu = sum(cpu_seconds(h["pid"]) for h in before) - cpu_start
    # Then the flood of issue 13 itself, sustained: one client sending empty continuation frames
    # as fast as it can, reconnecting whenever it is closed. Unbounded, its first connection
    # would take a worker's whole CPU for the whole time.
    cpu_before = sum(cpu_seconds(h["pid"]) for h in before)
    flood = await fragment_flood(port, "/ws/broadcast/flood/", FLOOD_SECONDS)
    flood_cpu = sum(cpu_seconds(h["pid"]) for h in before) - cpu_before
    stop.set()
    canary = await canary_task

    # A client-chosen X-Forwarded-For never reaches the worker (nginx overwrites it).
    spoof = await RawSocket.open(
        port, "/ws/broadcast/spoof/", headers=[("X-Forwarded-For", SPOOFED)]
    )
    assert spoof.answer.status == 101
    await spoof.close()

    tally = Tally()
    chat_frames = [p for c in connections for p in c.probes]
    for probe in [p for s in sessions for p in s] + terminal + handshakes:
        tally.add(probe)
    for probe in chat_frames + floods + bad_tokens + members:
        tally.add(probe)
    after = _health(stack)
    refused: dict[str, int] = {}
    limits: dict[str, int] = {}
    for health in after:
        for reason, count in health["refused"].items():
            refused[reason] = refused.get(reason, 0) + count
        for name, count in health["limits"].items():
            limits[name] = limits.get(name, 0) + count
    stored = _stored_messages(example_env)
    summary = {
        "inputs": tally.inputs,
        "seconds": round(elapsed, 1),
        "worker_cpu_seconds": round(inputs_cpu, 1),
        "answers": tally.answers,
        "refused_counted": refused,
        "limits_counted": limits,
        "chat_connections": len(connections),
        "chat_stored": stored,
        "canary_messages": canary.expected,
        "canary_loss": canary.loss,
        "canary_p50_ms": round(canary.percentile(0.5) * 1000, 1),
        "canary_p99_ms": round(canary.percentile(0.99) * 1000, 1),
        "flood_connections": flood.connections,
        "flood_frames": flood.frames,
        "flood_worker_cpu_seconds": round(flood_cpu, 2),
    }
    print(json.dumps(summary, indent=1, sort_keys=True))

    assert tally.inputs >= 10_000
    assert tally.mismatches == []
    assert [h["pid"] for h in after] == [h["pid"] for h in before], "a worker restarted"
    # Unmatched paths never connect and never answer 5xx (the example's routing answers 404;
    # nginx answers 400 for the few request lines it refuses itself).
    paths = tally.answers["path"]
    assert "HTTP 101" not in paths and "no answer" not in paths, paths
    assert not [answer for answer in paths if answer.startswith("HTTP 5")], paths
    # Every refusal the workers made is counted: one per refused probe, none for anything else.
    assert refused.get("origin", 0) == tally.answers["origin"].get("HTTP 403", 0)
    fragments = refused.get("too many fragments", 0) - COUNTS["fragment_flood"]
    # Every flood connection was closed by the bound (the last one may have been cut short by
    # the end of the flood before it sent a frame).
    assert flood.connections - 1 <= fragments <= flood.connections, (fragments, flood)
    assert flood.connections > 10
    assert flood_cpu / flood.connections < 0.02, "a flood connection cost over 20 ms of CPU"
    assert refused.get("too many control frames", 0) == COUNTS["ping_flood"]
    host_400 = tally.answers["host"].get("HTTP 400", 0)
    assert 0 < refused.get("host", 0) <= host_400
    assert canary.loss == 0
    assert canary.percentile(0.99) < 2 * timeout_factor()

    # The chat: every echoed message was stored, once; every refusal counted once; nothing
    # failed in a consumer (1011, a traceback).
    assert stored == sum(p.observed == hostile.ECHO for p in chat_frames)
    assert limits.get("unauthorized", 0) == CHAT_TOKENS
    assert limits.get("forbidden", 0) == CHAT_NON_MEMBERS
    assert limits.get("rate_connection", 0) == CHAT_FLOODS
    assert limits.get("internal_error", 0) == 0
    closing = sum(p.expected == "close 1008" for p in chat_frames)
    assert limits.get("protocol_violation", 0) == closing
    not_utf8 = COUNTS["invalid_utf8"] + sum(p.expected == "close 1007" for p in chat_frames)
    assert refused.get("invalid UTF-8", 0) == not_utf8

    logs = _worker_logs(stack.run_dir)
    assert SPOOFED not in logs
    assert "Traceback" not in logs, logs[logs.find("Traceback") - 500 :][:3000]


def _worker_logs(run_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (run_dir / "logs").glob("worker-*.log"))
