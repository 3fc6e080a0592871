"""The recovery merge as pure logic: every interleaving gives offsets in order, once each."""

from __future__ import annotations

import random

import pytest

from channels_scale.history.merge import Position, Recovery, StreamState


def test_fresh_client_starts_at_top_and_gets_live_after_it() -> None:
    rec: Recovery[str] = Recovery(None)
    assert rec.live("e1", 6, "m6") == ([], False)  # held while recovering
    out = rec.history(StreamState("e1", 1, 5), [])
    assert out.deliver == [(6, "m6")] and not out.reload
    assert rec.live("e1", 7, "m7") == ([(7, "m7")], False)
    assert rec.position() == Position("e1", 7)


def test_resume_delivers_missed_history_then_held_live_without_duplicates() -> None:
    rec: Recovery[str] = Recovery(Position("e1", 3))
    rec.live("e1", 6, "m6")  # arrived during the read; history also has it
    rec.live("e1", 7, "m7")
    out = rec.history(StreamState("e1", 1, 6), [(4, "m4"), (5, "m5"), (6, "m6")])
    assert out.deliver == [(4, "m4"), (5, "m5"), (6, "m6"), (7, "m7")]
    assert rec.live("e1", 7, "m7") == ([], False)  # a duplicate is dropped
    assert rec.live("e1", 8, "m8") == ([(8, "m8")], False)


def test_new_epoch_means_reload() -> None:
    rec: Recovery[str] = Recovery(Position("old", 10))
    out = rec.history(StreamState("new", 1, 2), [(1, "a"), (2, "b")])
    assert out.reload and out.reason == "epoch" and out.deliver == []
    assert rec.position() == Position("new", 2)
    assert rec.live("new", 3, "c") == ([(3, "c")], False)


def test_trimmed_history_means_reload() -> None:
    rec: Recovery[str] = Recovery(Position("e", 2))
    out = rec.history(StreamState("e", 50, 60), [(o, str(o)) for o in range(50, 61)])
    assert out.reload and out.reason == "trimmed"
    assert rec.position() == Position("e", 60)


def test_client_already_up_to_date_needs_nothing() -> None:
    rec: Recovery[str] = Recovery(Position("e", 60))
    out = rec.history(StreamState("e", 61, 60), [])
    assert not out.reload and out.deliver == []


def test_live_gap_is_reported_and_filled_by_another_read() -> None:
    rec: Recovery[str] = Recovery(Position("e", 0))
    rec.history(StreamState("e", 1, 0), [])
    assert rec.live("e", 1, "a") == ([(1, "a")], False)
    sent, gap = rec.live("e", 3, "c")
    assert (sent, gap) == ([], True)
    rec.restart_recovery(("e", 3, "c"))
    out = rec.history(StreamState("e", 1, 3), [(2, "b"), (3, "c")])
    assert out.deliver == [(2, "b"), (3, "c")]


def test_held_message_beyond_a_hole_asks_for_another_read() -> None:
    rec: Recovery[str] = Recovery(Position("e", 1))
    rec.live("e", 4, "d")  # 2 and 3 were written after our read and 3's live copy was lost
    out = rec.history(StreamState("e", 1, 2), [(2, "b")])
    assert out.deliver == [(2, "b")] and out.again and rec.recovering
    out = rec.history(StreamState("e", 1, 4), [(3, "c"), (4, "d")])
    assert out.deliver == [(3, "c"), (4, "d")] and not out.again


@pytest.mark.parametrize("seed", range(30))
def test_random_interleavings_never_lose_or_duplicate(seed: int) -> None:
    """Messages 1..N are written; the client had K; the read happens at a random point while
    live copies arrive (some duplicated, none lost): the client ends with K+1..N exactly once."""
    rng = random.Random(seed)
    n, k = rng.randint(5, 60), rng.randint(0, 4)
    read_at = rng.randint(k, n)  # the stream read sees offsets up to read_at
    rec: Recovery[int] = Recovery(Position("e", k))
    got: list[int] = []
    live_before_read = list(range(rng.randint(k + 1, read_at + 1), read_at + 1))
    for off in live_before_read:
        got += [o for o, _ in rec.live("e", off, off)[0]]
    out = rec.history(StreamState("e", 1, read_at), [(o, o) for o in range(k + 1, read_at + 1)])
    got += [o for o, _ in out.deliver]
    for off in range(read_at + 1, n + 1):
        for _ in range(rng.choice((1, 1, 2))):  # sometimes a duplicate copy
            got += [o for o, _ in rec.live("e", off, off)[0]]
    assert got == list(range(k + 1, n + 1))
