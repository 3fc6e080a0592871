"""The shared contract, history and presence suites on the Sentinel backend
(``redis+sentinel://``): tests/layer's test functions with this directory's ``layer_hosts``."""

from tests.suite_tests import *  # noqa: F403
