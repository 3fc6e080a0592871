"""The router driven by plain method calls, no event loop and no Redis (sans-I/O)."""

from __future__ import annotations

from channels_scale.layer import codec
from channels_scale.layer.buffer import OverflowPolicy
from channels_scale.layer.router import Router
from channels_scale.layer.stats import Counters

INBOX = "A" * 12
OTHER = "B" * 12


def make(capacity: int = 10, group_expiry: float = 100.0) -> Router:
    return Router(INBOX, lambda _: capacity, OverflowPolicy.DROP_OLDEST, group_expiry, Counters())


def frame(kind: int, origin: str, seq: int, target: str, payload: object) -> codec.Frame:
    return codec.unpack_frame(codec.pack_frame(kind, origin, seq, 1e12, target, payload, 10_000))


def test_discard_then_add_in_one_turn_queues_unsubscribe_then_subscribe() -> None:
    router = make()
    assert router.join("g", "c1", 0.0)
    assert router.changes == [(True, "g")]
    router.changes.clear()
    router.leave("g", "c1")
    assert router.join("g", "c2", 0.0)  # the first member again
    assert router.changes == [(False, "g"), (True, "g")]  # in the order issued


def test_remote_add_and_discard_in_one_read_apply_in_order() -> None:
    router = make()
    router.frame_received(frame(codec.GROUP_ADD, OTHER, 1, "x!c", "g"), 0.0)
    router.frame_received(frame(codec.GROUP_DISCARD, OTHER, 2, "x!c", "g"), 0.0)
    assert "g" not in router.groups
    assert router.changes == [(True, "g"), (False, "g")]


def test_remote_add_is_queued_for_acknowledgement_and_acknowledgements_are_collected() -> None:
    router = make()
    router.frame_received(frame(codec.GROUP_ADD, OTHER, 1, "x!c", "g"), 0.0)
    assert router.joined == [(OTHER, "g", "x!c")]  # the I/O side answers once subscribed
    router.frame_received(frame(codec.GROUP_ADDED, OTHER, 2, "y!c", "h"), 0.0)
    assert router.added == [("h", "y!c")]
    assert router.counters.bad_frames == 0


def test_group_frame_fans_out_the_same_entry_and_drops_duplicates() -> None:
    router = make()
    router.join("g", "c1", 0.0)
    router.join("g", "c2", 0.0)
    message = frame(codec.GROUP, OTHER, 1, "g", {"type": "m"})
    router.frame_received(message, 1.0)
    router.frame_received(message, 1.0)  # a retried publish of the sender's first frame
    assert router.buffers["c1"].take(2.0) == {"type": "m"}
    assert router.buffers["c2"].take(2.0) == {"type": "m"}
    assert router.buffers["c1"].take(2.0) is None
    assert router.counters.delivered == 2
    own = frame(codec.GROUP, INBOX, 1, "g", {"type": "mine"})
    router.frame_received(own, 1.0)  # delivered locally by group_send already
    assert router.buffers["c1"].take(2.0) is None


def test_gap_is_counted() -> None:
    router = make()
    router.join("g", "c", 0.0)
    for seq in (1, 2, 5):
        router.frame_received(frame(codec.GROUP, OTHER, seq, "g", {"type": "m"}), 1.0)
    assert router.counters.lost_gap == 2


def test_group_expiry_drops_members_and_queues_unsubscribe() -> None:
    router = make(group_expiry=10.0)
    router.join("g", "old", 0.0)
    router.join("g", "new", 8.0)
    router.changes.clear()
    router.fanout("g", (1e12, {"type": "m"}), 12.0)
    assert list(router.groups["g"]) == ["new"]
    assert "old" not in router.buffers or router.buffers["old"].take(12.0) is None
    router.sweep(20.0)
    assert "g" not in router.groups and router.changes == [(False, "g")]


def test_flush_from_another_process_drops_groups_and_messages() -> None:
    router = make()
    router.join("g", "c", 0.0)
    router.deliver("c", (1e12, {"type": "m"}))
    router.changes.clear()
    router.frame_received(frame(codec.FLUSH, INBOX, 0, "", None), 1.0)  # our own: ignored
    assert "g" in router.groups
    router.frame_received(frame(codec.FLUSH, OTHER, 0, "", None), 1.0)
    assert not router.groups and router.changes == [(False, "g")]
    assert router.buffers["c"].take(1.0) is None


def test_overflow_drop_oldest_is_counted() -> None:
    router = make(capacity=1)
    router.deliver("c", (1e12, {"n": 1}))
    router.deliver("c", (1e12, {"n": 2}))
    assert router.counters.dropped_overflow == 1
    assert router.buffers["c"].take(0.0) == {"n": 2}


def test_a_sink_takes_a_message_only_when_nothing_is_buffered_before_it() -> None:
    router = make(capacity=2)
    router.join("g", "c1", 0.0)
    router.join("g", "c2", 0.0)
    taken: list[object] = []
    accept = [True]

    def sink(message: dict[str, object]) -> bool:
        if accept[0]:
            taken.append(message)
        return accept[0]

    router.buffer("c1").sink = sink
    router.fanout("g", (1e12, {"n": 1}), 1.0)  # taken by c1's sink; c2 buffers it
    assert taken == [{"n": 1}] and len(router.buffers["c1"]) == 0
    assert router.buffers["c2"].take(2.0) == {"n": 1}
    accept[0] = False
    router.fanout("g", (1e12, {"n": 2}), 1.0)  # declined: buffered
    accept[0] = True
    router.fanout("g", (1e12, {"n": 3}), 1.0)  # behind n=2: buffered too, in order
    router.deliver("c1", (1e12, {"n": 4}))  # the same for a single-channel send
    assert taken == [{"n": 1}]
    # capacity 2: n=2 was dropped (drop-oldest); with a notice type the notice comes first and a
    # sink waits behind it
    router.fanout("g", (1e12, {"n": 5}), 1.0)
    assert taken == [{"n": 1}]
    notice = router.buffers["c1"].take(2.0, "layer.overflow")
    assert notice is not None and notice["type"] == "layer.overflow"
    assert [router.buffers["c1"].take(2.0) for _ in range(3)] == [{"n": 4}, {"n": 5}, None]
    router.fanout("g", (1e12, {"n": 6}), 1.0)
    assert taken == [{"n": 1}, {"n": 6}]
    # without notices (take without a type), a drop leaves nothing for a sink to wait behind
    accept[0] = False
    for n in (7, 8, 9):
        router.fanout("g", (1e12, {"n": n}), 1.0)  # n=7 dropped
    assert [router.buffers["c1"].take(2.0) for _ in range(3)] == [{"n": 8}, {"n": 9}, None]
    accept[0] = True
    router.fanout("g", (1e12, {"n": 10}), 1.0)
    assert taken == [{"n": 1}, {"n": 6}, {"n": 10}]
    assert router.counters.delivered_direct == 3
    # a buffer with a sink is not swept while idle (its consumer still wants it)
    router.sweep(3.0)
    router.sweep(4.0)
    assert "c1" in router.buffers
