"""``channels_scale.publish*`` from sync code, received by another OS process via a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.test import Client

import channels_scale
from channels_scale import publisher
from channels_scale.consumers import FRAME_TYPE
from channels_scale.exceptions import ConfigError, LayerUnavailable
from channels_scale.history.consumer import STREAM_FRAME_TYPE
from tests.conftest import scaled
from tests.publish.conftest import ROOT, Receiver, layer_settings

pytestmark = pytest.mark.usefixtures("redis_layer")

Start = Callable[[str, int], Receiver]


def in_thread(target: Callable[[], Any]) -> None:
    """Run ``target`` in a plain new thread (no event loop there); re-raise what it raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(scaled(30))
    assert not thread.is_alive()
    if failures:
        raise failures[0]


def test_plain_thread_reaches_another_process(receiver: Start) -> None:
    got = receiver("room", 3)

    def work() -> None:
        channels_scale.publish("room", {"type": "chat.message", "n": 1})
        assert channels_scale.publish_json("room", {"n": 2}) == '{"n": 2}'
        assert channels_scale.publish_json("room", {"n": 3}, type="room.event") == '{"n": 3}'

    in_thread(work)
    assert got.messages() == [
        {"type": "chat.message", "n": 1},
        {"type": FRAME_TYPE, "text": '{"n": 2}'},
        {"type": "room.event", "text": '{"n": 3}'},
    ]


def test_stream_publish_is_stored_with_its_position(receiver: Start) -> None:
    got = receiver("stream.news", 2)
    texts = [channels_scale.publish_stream("stream.news", {"n": n, "é": True}) for n in (1, 2)]
    assert texts[0] == '{"n":1,"é":true}'  # compact, as StreamConsumer's publish encodes
    messages = got.messages()
    assert [m["text"] for m in messages] == texts
    assert {m["type"] for m in messages} == {STREAM_FRAME_TYPE}
    assert [m["_offset"] for m in messages] == [1, 2]
    layer = get_channel_layer()
    _, stored = async_to_sync(layer.group_history)("stream.news")
    assert [m["text"] for _, m in stored] == texts


@pytest.mark.urls("tests.publish.urls")
def test_django_view_publishes(receiver: Start, client: Client) -> None:
    got = receiver("view", 3)
    for n in range(3):
        response = client.get("/publish/", {"group": "view", "n": n})
        assert response.status_code == 200
        assert response.content == f'{{"n": {n}}}'.encode()
    assert [json.loads(m["text"])["n"] for m in got.messages()] == [0, 1, 2]


def test_concurrent_threads_keep_their_own_order(receiver: Start) -> None:
    threads, each = 8, 60
    got = receiver("busy", threads * each)
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait(scaled(10))
        for n in range(each):
            channels_scale.publish("busy", {"type": "m", "t": t, "n": n})

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(scaled(60))
    messages = got.messages()
    for t in range(threads):
        assert [m["n"] for m in messages if m["t"] == t] == list(range(each))
    # the premise: threads really interleaved (else per-thread order would be trivial)
    first_thread_span = [i for i, m in enumerate(messages) if m["t"] == messages[0]["t"]]
    assert first_thread_span[-1] - first_thread_span[0] >= each


def test_one_loop_and_one_thread_for_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[asyncio.AbstractEventLoop] = []
    original = asyncio.BaseEventLoop.__init__

    def counting(self: asyncio.BaseEventLoop) -> None:
        made.append(self)
        original(self)

    monkeypatch.setattr(asyncio.BaseEventLoop, "__init__", counting)
    layer = get_channel_layer()
    # premise: the usual way makes an event loop per call
    for n in range(3):
        async_to_sync(layer.group_send)("count", {"type": "m", "n": n})
    assert len(made) >= 3

    made.clear()
    threads_before = threading.active_count()
    channels_scale.publish("count", {"type": "m", "n": 0})
    first = publisher.publisher()
    for n in range(200):
        channels_scale.publish("count", {"type": "m", "n": n})
    in_thread(lambda: channels_scale.publish("count", {"type": "m", "n": -1}))
    assert made == [first.loop]
    assert publisher.publisher() is first
    # asgiref's loop threads of the premise may still be ending: at most one thread more
    assert threading.active_count() <= threads_before + 1
    names = [thread.name for thread in threading.enumerate()]
    assert names.count(first.thread.name) == 1
    assert layer.stats()["published"] == 3 + 202


async def test_works_through_sync_to_async_and_refuses_a_running_loop(receiver: Start) -> None:
    got = await sync_to_async(receiver)("async", 1)
    text = await sync_to_async(channels_scale.publish_json)("async", {"n": 1})
    assert text == '{"n": 1}'
    assert (await sync_to_async(got.messages)())[0]["text"] == text

    with pytest.raises(publisher.PublishInEventLoop, match=r"a running event loop.*await"):
        channels_scale.publish("async", {"type": "m"})

    async def from_the_publisher_loop() -> None:
        channels_scale.publish("async", {"type": "m"})

    loop = publisher.publisher().loop
    running = asyncio.run_coroutine_threadsafe(from_the_publisher_loop(), loop)
    with pytest.raises(publisher.PublishInEventLoop, match="publisher's own event loop"):
        await asyncio.wrap_future(running)


def test_a_forked_child_publishes_with_its_own_thread(receiver: Start) -> None:
    got = receiver("fork", 3)
    channels_scale.publish("fork", {"type": "m", "who": "parent", "n": 1})
    parent = publisher.publisher()
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (Python 3.12+)
        pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        status = 1
        try:
            channels_scale.publish("fork", {"type": "m", "who": "child", "n": 1})
            mine = publisher.publisher()
            fresh = mine is not parent and mine.thread.is_alive() and mine.pid == os.getpid()
            os.write(write, b"fresh" if fresh else b"inherited")
            status = 0
        except BaseException as exc:
            os.write(write, repr(exc).encode())
        finally:
            os._exit(status)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    report = os.read(read, 1000).decode()
    os.close(read)
    assert (os.waitstatus_to_exitcode(status), report) == (0, "fresh")
    channels_scale.publish("fork", {"type": "m", "who": "parent", "n": 2})
    assert publisher.publisher() is parent
    assert [(m["who"], m["n"]) for m in got.messages()] == [
        ("parent", 1),
        ("child", 1),
        ("parent", 2),
    ]


def test_redis_down_raises_within_send_timeout_then_recovers(
    settings: Any, redis_server: Any, prefix: str
) -> None:
    send_timeout = 1.0
    settings.CHANNEL_LAYERS = layer_settings(redis_server.url, prefix, send_timeout=send_timeout)
    channels_scale.publish("down", {"type": "m"})
    redis_server.stop(kill=True)
    started = time.monotonic()
    with pytest.raises(LayerUnavailable):
        channels_scale.publish("down", {"type": "m"})
    elapsed = time.monotonic() - started
    # it retried for send_timeout (not a fail-fast), and gave up within the documented bound
    assert send_timeout * 0.9 <= elapsed <= send_timeout + publisher.ANSWER_MARGIN + scaled(0.5)

    redis_server.start()
    channels_scale.publish("down", {"type": "m"})
    assert get_channel_layer().stats()["send_failed"] >= 1


def test_unknown_alias_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no channel layer 'nope'"):
        channels_scale.publish("g", {"type": "m"}, alias="nope")


def test_shutdown_closes_and_the_next_call_starts_again() -> None:
    channels_scale.publish("g", {"type": "m"})
    first = publisher.publisher()
    publisher.shutdown()
    assert not first.thread.is_alive()
    assert first.loop.is_closed()
    channels_scale.publish("g", {"type": "m"})
    assert publisher.publisher() is not first


def test_exit_after_publishing_is_quick_and_quiet(shared_redis: Any, prefix: str) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-m", "tests.publish.exits", shared_redis.url, prefix],
        cwd=ROOT, capture_output=True, text=True, timeout=scaled(30),
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "published\n", "")
    # the exit hook stops the loop and closes the connections within SHUTDOWN_TIMEOUT
    assert time.monotonic() - started < scaled(10)


async def test_in_memory_layer_reaches_a_consumer_loop(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_scale.layer.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("dev", channel)
    await sync_to_async(channels_scale.publish)("dev", {"type": "m", "n": 1})
    async with asyncio.timeout(scaled(5)):
        assert await layer.receive(channel) == {"type": "m", "n": 1}


def test_a_stuck_publisher_loop_gives_layer_unavailable(
    settings: Any, shared_redis: Any, prefix: str
) -> None:
    send_timeout = 0.5
    settings.CHANNEL_LAYERS = layer_settings(shared_redis.url, prefix, send_timeout=send_timeout)
    channels_scale.publish("stuck", {"type": "m"})
    release = threading.Event()
    publisher.publisher().loop.call_soon_threadsafe(release.wait, scaled(30))  # blocks the loop
    started = time.monotonic()
    try:
        with pytest.raises(LayerUnavailable, match=r"no answer within 1\.5 s"):
            channels_scale.publish("stuck", {"type": "m"})
    finally:
        release.set()
    elapsed = time.monotonic() - started
    assert send_timeout + publisher.ANSWER_MARGIN <= elapsed < scaled(5)
    channels_scale.publish("stuck", {"type": "m"})  # the loop serves again
