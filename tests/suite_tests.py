"""The shared contract, history and presence suites' test functions, gathered for another
topology: its test module star-imports this (collected there with its conftest's fixtures,
see tests/shared_suites.py). ``test_async_to_sync_from_threads`` stays in tests/layer (it also
needs the in-memory factory)."""

from __future__ import annotations

from tests.layer.test_contract import (
    test_cancelled_receive_loses_nothing,
    test_capacity_normal_channel,
    test_capacity_process_channel,
    test_channel_capacity_patterns,
    test_flush,
    test_group_add_twice_delivers_once,
    test_group_expiry,
    test_group_send_ignores_full_members,
    test_group_send_to_nobody_and_discard_unknown,
    test_group_with_a_normal_channel,
    test_groups,
    test_message_expiry,
    test_messages_keep_sender_order,
    test_new_channel_names,
    test_send_receive_normal_channel,
    test_two_receivers_one_message_each,
)
from tests.layer.test_history_backends import (
    test_group_without_history_is_refused,
    test_offsets_epoch_and_trimming,
)
from tests.layer.test_presence_backends import (
    test_entries_not_refreshed_expire,
    test_tabs_count_once_join_and_leave,
    test_user_info_needs_an_id,
)

__all__ = [
    "test_cancelled_receive_loses_nothing",
    "test_capacity_normal_channel",
    "test_capacity_process_channel",
    "test_channel_capacity_patterns",
    "test_entries_not_refreshed_expire",
    "test_flush",
    "test_group_add_twice_delivers_once",
    "test_group_expiry",
    "test_group_send_ignores_full_members",
    "test_group_send_to_nobody_and_discard_unknown",
    "test_group_with_a_normal_channel",
    "test_group_without_history_is_refused",
    "test_groups",
    "test_message_expiry",
    "test_messages_keep_sender_order",
    "test_new_channel_names",
    "test_offsets_epoch_and_trimming",
    "test_send_receive_normal_channel",
    "test_tabs_count_once_join_and_leave",
    "test_two_receivers_one_message_each",
    "test_user_info_needs_an_id",
]
