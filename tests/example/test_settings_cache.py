"""The example's cache (failed-login counts) on each Redis topology ``up --redis`` accepts.

Django's Redis cache takes one ``redis://``/``rediss://``/``unix://`` server; handed a
``redis+cluster://`` URL it raises at the first login. The settings are read in a fresh
interpreter (they are imported once per process), once per URL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import example_environment

READ = """
import importlib, json, os, sys
found = {}
for url in sys.argv[1:]:
    os.environ["CHANNELS_SCALE_REDIS_URL"] = url
    sys.modules.pop("config.settings", None)
    settings = importlib.import_module("config.settings")
    found[url] = getattr(settings, "CACHES", {}).get("default", {}).get("LOCATION")
print(json.dumps(found))
"""


def test_the_cache_is_one_plain_redis_never_a_cluster_or_sentinel(tmp_path: Path) -> None:
    urls = {
        "redis://10.0.0.1:6379/0": "redis://10.0.0.1:6379/0",
        "redis://10.0.0.1:6379/0,redis://10.0.0.2:6379/0": "redis://10.0.0.1:6379/0",
        "redis+cluster://10.0.0.1:6379,10.0.0.1:6380": None,  # per-process memory
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster": None,
    }
    done = subprocess.run(
        [sys.executable, "-c", READ, *urls], env=example_environment(tmp_path),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout.strip().splitlines()[-1]) == urls
