"""The layer's shared suites (contract, history, presence) on the cluster broker.

The tests are the ones of tests/layer, imported; tests/cluster/conftest.py gives their fixtures
(tests/shared_suites.py) the cluster as ``layer_hosts``.
"""

from __future__ import annotations

from tests.layer.test_contract import *  # noqa: F403
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
    "test_entries_not_refreshed_expire",
    "test_group_without_history_is_refused",
    "test_offsets_epoch_and_trimming",
    "test_tabs_count_once_join_and_leave",
    "test_user_info_needs_an_id",
]
