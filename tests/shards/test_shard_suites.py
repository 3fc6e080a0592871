"""The shared contract, history and presence suites on 3 standalone Redis shards (jump hash):
tests/layer's test functions with this directory's ``layer_hosts``."""

from tests.suite_tests import *  # noqa: F403
