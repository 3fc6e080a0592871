"""The shared contract, history and presence suites on the Sentinel backend (``redis+sentinel://``):
the same test functions as ``tests/layer``, with this directory's factories (conftest.py)."""

from __future__ import annotations

from tests.layer.test_contract import (  # noqa: F401 -- collected here with Sentinel factories
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
from tests.layer.test_history_backends import (  # noqa: F401
    test_group_without_history_is_refused,
    test_offsets_epoch_and_trimming,
)
from tests.layer.test_presence_backends import (  # noqa: F401
    test_entries_not_refreshed_expire,
    test_tabs_count_once_join_and_leave,
    test_user_info_needs_an_id,
)
