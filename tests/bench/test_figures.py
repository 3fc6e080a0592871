"""Pure unit tests of the bench frame, delivery accounting and figures (no I/O)."""

from __future__ import annotations

import math

import pytest

from channels_scale.bench.connections import rss_slope
from channels_scale.bench.costs import CpuSnapshot, cpu_by_process, cpu_delta
from channels_scale.bench.figures import (
    ClientCpu,
    ServerCosts,
    busiest_by_role,
    delivery_figures,
    encode_histogram,
    histogram_of,
    latency_summary,
    merge_histograms,
    per_unit,
    ratio,
    redis_command_deltas,
    saturation_point,
)
from channels_scale.bench.frames import (
    FRAME_SIZE,
    DeliveryCounts,
    FrameError,
    SubscriberTrack,
    decode_frame,
    encode_frame,
    merge_counts,
)
from channels_scale.bench.loadgen import source_address


def test_frame_is_padded_json_of_fixed_size() -> None:
    frame = encode_frame(3, 7, 41, 1_234_567_890_123)
    assert len(frame) == FRAME_SIZE
    assert decode_frame(frame) == (3, 7, 41, 1_234_567_890_123)
    assert decode_frame(frame.decode()) == (3, 7, 41, 1_234_567_890_123)
    # a server that re-serialises the JSON (spaces, other key order) still decodes
    assert decode_frame(b'{"t": 5, "s": 2, "p": 1, "f": 9, "x": ""}') == (9, 1, 2, 5)


def test_frame_too_large_and_garbage_are_refused() -> None:
    with pytest.raises(FrameError):
        encode_frame(1, 10**40, 10**40, 1)
    with pytest.raises(FrameError):
        decode_frame(b"hello")
    with pytest.raises(FrameError):
        decode_frame(b'{"p": 1}')


def test_track_counts_duplicates_reorders_and_unexpected() -> None:
    track = SubscriberTrack(10)
    for seq in (0, 1, 3, 2, 2, 5, 4, 11, -1):
        track.record(publisher=1, seq=seq)
    assert track.received == 9
    assert track.duplicated == 1  # the second 2
    assert track.reordered == 2  # 2 after 3, 4 after 5
    assert track.unexpected == 2  # 11 and -1
    assert track.unique_by_publisher() == {1: 6}


def test_track_orders_each_publisher_separately() -> None:
    track = SubscriberTrack(5)
    for pub, seq in ((1, 3), (2, 0), (2, 1), (1, 4)):
        assert track.record(pub, seq)
    assert track.reordered == 0


def test_counts_expected_and_lost_per_room() -> None:
    one = DeliveryCounts(subscribers_by_room={"a": 3}, sent_by_publisher={0: 10})
    one.room_of_publisher = {0: "a"}
    two = DeliveryCounts(subscribers_by_room={"a": 2, "b": 4}, sent_by_publisher={9: 5})
    two.room_of_publisher = {9: "b"}
    for counts, unique in ((one, {0: 28}), (two, {0: 20, 9: 19})):
        counts.unique_by_publisher = unique
    total = merge_counts([one, two])
    assert total.expected == 5 * 10 + 4 * 5
    assert total.unique == 28 + 20 + 19
    assert total.lost == 70 - 67
    assert total.sent == 15


def test_histograms_merge_exactly() -> None:
    a = histogram_of(range(1, 1001))
    b = histogram_of([100_000] * 10)
    merged = merge_histograms([encode_histogram(a), encode_histogram(b)])
    assert merged.get_total_count() == 1010
    summary = latency_summary(merged)
    assert summary.at(50) == pytest.approx(0.51, rel=0.01)  # 510 µs
    assert summary.at(100) == pytest.approx(100.0, rel=0.01)  # 100 ms
    assert summary.count == 1010


def test_empty_histogram_summary_is_nan() -> None:
    summary = latency_summary(histogram_of([]))
    assert summary.count == 0
    assert math.isnan(summary.at(99))


def test_ratio_and_per_unit_handle_missing_values() -> None:
    assert ratio(10.0, 4.0) == 2.5
    assert ratio(None, 4.0) is None
    assert ratio(1.0, 0.0) is None
    assert ratio(math.nan, 1.0) is None
    assert per_unit(2.0, 4000, 1e6) == 500.0  # 2 CPU s for 4,000 deliveries: 500 ms per 1k
    assert per_unit(None, 10) is None
    assert per_unit(1.0, 0) is None


def test_redis_command_deltas_skip_info_and_unchanged() -> None:
    before = {"cmdstat_publish": {"calls": 10}, "cmdstat_info": {"calls": 3}}
    after = {
        "cmdstat_publish": {"calls": 25},
        "cmdstat_info": {"calls": 5},
        "cmdstat_get": {"calls": 0},
        "cmdstat_evalsha": {"calls": 4},
    }
    assert redis_command_deltas(before, after) == {"publish": 15, "evalsha": 4}


def _figures(lost: int, p99_us: int) -> object:
    counts = DeliveryCounts(
        subscribers_by_room={"r": 1},
        sent_by_publisher={0: 100},
        room_of_publisher={0: "r"},
        unique_by_publisher={0: 100 - lost},
    )
    return delivery_figures(
        counts=counts,
        latency=latency_summary(histogram_of([p99_us] * 100)),
        offered_frames_per_s=10,
        offered_deliveries_per_s=10,
        scheduled_s=10,
        first_scheduled_us=0,
        last_receipt_us=20_000_000,
        max_send_lag_us=0,
        clients=[ClientCpu(cpu_s=0.95, wall_s=1.0)],
        connection_errors=0,
        errors=[],
        costs=ServerCosts(
            cpu_s=0.5, cpu_by_role={"worker": 0.3, "lb": 0.2}, redis_commands={"publish": 200}
        ),
    )


def test_delivery_figures() -> None:
    f = _figures(lost=10, p99_us=5000)
    assert f.expected == 100
    assert f.deliveries == 90
    assert f.lost == 10
    assert f.loss_ratio == pytest.approx(0.1)
    assert f.window_s == 20  # last receipt 20 s after the first scheduled send
    assert f.deliveries_per_s == pytest.approx(4.5)
    assert f.server_cpu_ms_per_1k == pytest.approx(0.5 * 1e6 / 90)
    assert f.lb_cpu_ms_per_1k == pytest.approx(0.2 * 1e6 / 90)  # the load balancer's own share
    assert f.redis_commands_per_frame == 2.0
    assert f.client_saturated
    data = f.to_json()
    assert data["clients"][0]["utilization"] == 0.95
    assert data["latency"]["percentiles_ms"]["99"] == pytest.approx(5.0, rel=0.01)


def test_saturation_point_stops_at_first_failure() -> None:
    good, bad = _figures(0, 10_000), _figures(0, 500_000)
    lossy = _figures(1, 1_000)
    steps = [(10.0, good), (15.0, good), (22.0, bad), (33.0, good)]
    assert saturation_point(steps, bound_ms=100) == 15.0  # type: ignore[arg-type]
    assert saturation_point([(10.0, lossy)], bound_ms=100) is None  # type: ignore[list-item]
    assert saturation_point([], bound_ms=100) is None


def test_busiest_process_per_role_is_not_the_role_average() -> None:
    # Two workers: one pegged (1.9 s of a 2 s step), one nearly idle; the role's sum (2.0 s)
    # would read as "two workers at half a core" -- the busiest share says which one is bound.
    before = CpuSnapshot({1: 10.0, 2: 5.0, 3: 1.0}, {1: "worker", 2: "worker", 3: "lb"})
    after = CpuSnapshot(
        {1: 11.9, 2: 5.1, 3: 1.5, 4: 0.2}, {1: "worker", 2: "worker", 3: "lb", 4: "redis"}
    )
    spent = cpu_by_process(before, after)
    assert spent == pytest.approx({"worker 1": 1.9, "worker 2": 0.1, "lb 3": 0.5, "redis 4": 0.2})
    total, by_role = cpu_delta(before, after)
    assert total == pytest.approx(2.7)
    assert by_role == pytest.approx({"worker": 2.0, "lb": 0.5, "redis": 0.2})
    shares = busiest_by_role(spent, 2.0)
    assert shares == pytest.approx({"worker": 0.95, "lb": 0.25, "redis": 0.1})
    assert busiest_by_role(spent, 0.0) == {}


def test_source_addresses_spread_only_when_many() -> None:
    assert source_address(5, 999) is None
    addresses = {source_address(i, 5000) for i in range(5000)}
    assert len(addresses) == 5
    assert all(a is not None and a.startswith("127.") for a in addresses)


def test_rss_slope_leaves_out_the_first_step() -> None:
    steps = [
        {"held": 100, "rss": 50_000_000},
        {"held": 200, "rss": 51_000_000},
        {"held": 300, "rss": 52_000_000},
    ]
    assert rss_slope(steps) == 10_000
    assert rss_slope(steps[:1]) is None
    assert rss_slope([steps[0], steps[0]]) is None
