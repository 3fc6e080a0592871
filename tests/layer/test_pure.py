"""Unit tests of the pure modules: naming, sharding, backoff, codec, buffer, stats, config."""

from __future__ import annotations

import collections

import pytest

from channels_scale.exceptions import ConfigError, MessageTooLarge
from channels_scale.layer import codec
from channels_scale.layer.backoff import full_jitter
from channels_scale.layer.buffer import ChannelBuffer, OverflowPolicy
from channels_scale.layer.config import HostConfig, LayerConfig, decode_hosts
from channels_scale.layer.naming import (
    Keys,
    inbox_of,
    is_process_specific,
    make_channel_name,
    new_inbox_id,
)
from channels_scale.layer.sharding import ShardRouter, jump_hash, name_key
from channels_scale.layer.stats import Counters, GapDetector

# -- naming ------------------------------------------------------------------------------


def test_channel_names_share_the_inbox() -> None:
    inbox = new_inbox_id()
    a = make_channel_name("specific.", inbox, "aaa")
    b = make_channel_name("specific", inbox, "bbb")
    assert a == f"specific.{inbox}!aaa"
    assert b == f"specific.{inbox}!bbb"
    assert inbox_of(a) == inbox_of(b) == inbox
    assert inbox_of(make_channel_name("", inbox, "x")) == inbox
    assert is_process_specific(a)
    assert not is_process_specific("worker.tasks")


def test_inbox_ids_are_random_and_safe() -> None:
    ids = {new_inbox_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.isalnum() for i in ids)


def test_keys_are_prefixed_and_hash_tagged() -> None:
    keys = Keys("asgi")
    assert keys.group("room") == "asgi:group:{room}"
    assert keys.inbox("abc") == "asgi:inbox:{abc}"
    assert keys.queue("w") == "asgi:queue:{w}"
    assert keys.group_queues("room") == "asgi:gq:{room}"
    assert keys.pattern() == "asgi:*"


# -- sharding ----------------------------------------------------------------------------


def test_jump_hash_known_values() -> None:
    # values of the reference implementation (Lamping & Veach, Go port)
    assert jump_hash(0, 1) == 0
    assert [jump_hash(k, 10) for k in range(5)] == [jump_hash(k, 10) for k in range(5)]
    assert all(jump_hash(k, 1) == 0 for k in range(100))
    with pytest.raises(ValueError):
        jump_hash(1, 0)


def test_jump_hash_is_balanced_and_moves_few_keys() -> None:
    keys = [name_key(f"group-{i}") for i in range(4000)]
    four = [jump_hash(k, 4) for k in keys]
    counts = collections.Counter(four)
    assert all(800 < c < 1200 for c in counts.values())
    five = [jump_hash(k, 5) for k in keys]
    moved = sum(1 for a, b in zip(four, five, strict=True) if a != b)
    # about 1/5 of the keys move, all of them to the new shard
    assert 600 < moved < 1000
    assert all(b == 4 for a, b in zip(four, five, strict=True) if a != b)


def test_shard_router() -> None:
    assert ShardRouter(1).shard_for("anything") == 0
    router = ShardRouter(3)
    assert router.shard_for("room") == router.shard_for("room") == jump_hash(name_key("room"), 3)
    with pytest.raises(ValueError):
        ShardRouter(0)


def test_full_jitter_is_bounded() -> None:
    assert full_jitter(0, 0.1, 5, rand=lambda: 1.0) == pytest.approx(0.1)
    assert full_jitter(3, 0.1, 5, rand=lambda: 1.0) == pytest.approx(0.8)
    assert full_jitter(100, 0.1, 5, rand=lambda: 1.0) == 5
    assert full_jitter(100, 0.1, 5, rand=lambda: 0.0) == 0
    assert all(0 <= full_jitter(a, 0.05, 2) <= 2 for a in range(50))


# -- codec -------------------------------------------------------------------------------


def test_frame_round_trip() -> None:
    message = {"type": "chat.message", "text": "hé", "n": 3, "raw": b"\x00\xff", "l": [1, 2]}
    data = codec.pack_frame(codec.GROUP, "origin", 7, 123.5, "room", message, 10_000)
    frame = codec.unpack_frame(data)
    assert frame == codec.Frame(codec.GROUP, "origin", 7, 123.5, "room", message)


def test_frame_too_large() -> None:
    with pytest.raises(MessageTooLarge):
        codec.pack_frame(codec.MESSAGE, "o", 1, 0.0, "c", {"x": "y" * 200}, 100)
    with pytest.raises(MessageTooLarge):
        codec.copy_message({"x": "y" * 200}, 100)


def test_bad_frames_are_value_errors() -> None:
    for data in (b"", b"\xc1", codec.pack_frame(0, "o", 1, 0.0, "c", {}, 100)[:-3], b"\x93\x01"):
        with pytest.raises(ValueError):
            codec.unpack_frame(data)


def test_copy_message_is_deep() -> None:
    original = {"type": "t", "inner": {"a": [1]}}
    copied = codec.copy_message(original, 1000)
    assert copied == original
    copied["inner"]["a"].append(2)
    assert original["inner"]["a"] == [1]


# -- buffer ------------------------------------------------------------------------------


def entry(n: int, expires: float = 1e12) -> tuple[float, dict[str, int]]:
    return (expires, {"n": n})


def test_buffer_drop_oldest_counts_and_notifies() -> None:
    buffer = ChannelBuffer(2)
    assert buffer.offer(entry(1)) and buffer.offer(entry(2))
    assert buffer.is_full()
    assert not buffer.offer(entry(3))
    assert buffer.dropped == 1
    notice = buffer.take(0.0, "layer.overflow")
    assert notice == {"type": "layer.overflow", "dropped": 1, "total_dropped": 1}
    assert buffer.take(0.0, "layer.overflow") == {"n": 2}
    assert buffer.take(0.0, "layer.overflow") == {"n": 3}
    assert buffer.take(0.0, "layer.overflow") is None


def test_buffer_drop_newest() -> None:
    buffer = ChannelBuffer(1, OverflowPolicy.DROP_NEWEST)
    buffer.offer(entry(1))
    assert not buffer.offer(entry(2))
    assert buffer.take(0.0) == {"n": 1}
    assert buffer.take(0.0) is None
    assert buffer.dropped == 1


def test_buffer_expiry() -> None:
    buffer = ChannelBuffer(10)
    buffer.offer(entry(1, expires=5))
    buffer.offer(entry(2, expires=5))
    buffer.offer(entry(3, expires=20))
    assert buffer.take(10.0) == {"n": 3}
    assert buffer.expired == 2
    buffer.offer(entry(4, expires=5))
    assert buffer.purge_expired(10.0) == 1
    assert len(buffer) == 0


def test_buffer_clear_and_policy_parse() -> None:
    buffer = ChannelBuffer(0)  # capacity is at least one
    assert buffer.capacity == 1
    buffer.offer(entry(1))
    buffer.clear()
    assert buffer.take(0.0) is None
    assert OverflowPolicy.parse("drop_newest") is OverflowPolicy.DROP_NEWEST
    assert OverflowPolicy.parse(OverflowPolicy.DROP_OLDEST) is OverflowPolicy.DROP_OLDEST
    with pytest.raises(ConfigError):
        OverflowPolicy.parse("block")


# -- stats -------------------------------------------------------------------------------


def test_buffer_counts_expired_into_the_layer_counters() -> None:
    counters = Counters()
    buffer = ChannelBuffer(10, counters=counters)
    buffer.offer((1.0, {"type": "old"}))
    buffer.offer((1.0, {"type": "old"}))
    buffer.offer((9.0, {"type": "new"}))
    assert buffer.take(5.0) == {"type": "new"}  # receive() drops the two expired ones
    assert counters.expired == 2 and buffer.expired == 2
    buffer.offer((1.0, {"type": "old"}))
    assert buffer.purge_expired(5.0) == 1  # housekeeping drops one more
    assert counters.expired == 3


def test_gap_detector_counts_gaps_reorders_and_duplicates() -> None:
    gaps = GapDetector()
    assert gaps.observe("g", "a", 5) == (True, 0)  # first sight: no history
    assert gaps.observe("g", "a", 6) == (True, 0)
    assert gaps.observe("g", "a", 9) == (True, 2)  # 7 and 8 missing
    assert gaps.observe("g", "a", 8) == (True, -1)  # 8 overtaken, not lost
    assert gaps.observe("g", "a", 8) == (False, 0)  # duplicate
    assert gaps.observe("g", "a", 9) == (False, 0)
    assert gaps.observe("g", "b", 1) == (True, 0)  # other sender
    assert gaps.observe("g", "a", 1) == (True, 0)  # older than the first seen (5): new to us
    assert gaps.observe("g", "a", 2) == (True, 0)
    assert gaps.observe("g", "b", 1) == (False, 0)  # a retried first frame is a duplicate
    gaps.forget("g")
    assert gaps.observe("g", "a", 50) == (True, 0)
    gaps.clear()
    assert gaps.observe("g", "a", 70) == (True, 0)
    assert gaps.observe("g", "a", 68) == (True, 0)  # overtaken by the first frame seen: new
    assert gaps.observe("g", "a", 68) == (False, 0)
    assert gaps.observe("g", "a", 69) == (True, 0)  # between: not seen yet
    assert gaps.observe("g", "a", 69) == (False, 0)


def test_gap_detector_is_bounded() -> None:
    gaps = GapDetector(max_origins=2, max_missing=4)
    for origin in "abc":
        gaps.observe("g", origin, 1)
    assert gaps.observe("g", "a", 5) == (True, 0)  # "a" was evicted
    assert gaps.observe("g", "a", 100) == (True, 94)  # counted, but not remembered
    assert gaps.observe("g", "a", 97) == (False, 0)  # within the window: a duplicate


def test_counters_as_dict() -> None:
    counters = Counters()
    counters.delivered += 2
    assert counters.as_dict()["delivered"] == 2
    assert "lost_gap" in counters.as_dict()


# -- config ------------------------------------------------------------------------------


def test_decode_hosts_like_channels_redis() -> None:
    assert decode_hosts(None) == (HostConfig("redis://localhost:6379"),)
    hosts = decode_hosts(
        [
            "redis://user:pw@h:1/2",
            "rediss://h:2",
            ("h", 3),
            {"address": "redis://h:4", "socket_timeout": None},
            {"host": "h", "port": 5},
        ]
    )
    assert hosts[0].url == "redis://user:pw@h:1/2"
    assert hosts[1].url == "rediss://h:2"
    assert hosts[2] == HostConfig(None, {"host": "h", "port": 3})
    assert hosts[3] == HostConfig("redis://h:4", {"socket_timeout": None})
    assert hosts[4] == HostConfig(None, {"host": "h", "port": 5})
    assert "pw" not in hosts[0].describe()


@pytest.mark.parametrize(
    "hosts",
    [
        "redis://h",
        ["http://h"],
        [{"master_name": "m", "sentinels": []}],
        [42],
        [{"address": 3}],
    ],
)
def test_decode_hosts_rejects(hosts: object) -> None:
    with pytest.raises(ConfigError):
        decode_hosts(hosts)


def test_layer_config_checks_values() -> None:
    config = LayerConfig.build(capacity=5, overflow="drop_newest", prefix="p")
    assert config.capacity == 5
    assert config.overflow is OverflowPolicy.DROP_NEWEST
    for bad in (
        {"capacity": 0},
        {"expiry": -1},
        {"prefix": "a b"},
        {"prefix": ""},
        {"bogus": 1},
        {"overflow_notice_type": 3},
        {"pool_size": True},
    ):
        with pytest.raises(ConfigError):
            LayerConfig.build(**bad)
