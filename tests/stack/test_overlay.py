"""The settings overlay and the restart's config edit, as pure functions; restart's bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels_scale.settings import describe_hosts, redact, stack_channel_layers
from channels_scale.stack.overlay import render_overlay
from channels_scale.stack.restart import nginx_with_server_down
from tests.stackrunner import run_cli


def test_overlay_imports_the_project_settings_and_replaces_the_layer() -> None:
    source = render_overlay("mysite.settings")
    assert "from mysite.settings import *" in source
    assert 'import_module("mysite.settings")' in source
    compile(source, "overlay.py", "exec")
    with pytest.raises(ValueError, match="not a module name"):
        render_overlay("mysite.settings; import os")


def test_stack_layer_keeps_our_options_and_other_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNELS_SCALE_LAYER", "channels_scale")
    monkeypatch.setenv("CHANNELS_SCALE_REDIS_URL", "redis://127.0.0.1:7777/0")
    project = {
        "default": {
            "BACKEND": "channels_scale.layer.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://elsewhere:6379"], "history": {"chat.*": {"size": 9}}},
        },
        "other": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    }
    layers = stack_channel_layers(project)
    assert layers["default"]["CONFIG"] == {
        "hosts": ["redis://127.0.0.1:7777/0"], "history": {"chat.*": {"size": 9}},
    }  # fmt: skip
    assert layers["other"] == project["other"]
    # The recipe's layer from a tutorial project: replaced whole, nothing of it kept.
    tutorial = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                            "CONFIG": {"hosts": [("127.0.0.1", 6379)]}}}  # fmt: skip
    assert stack_channel_layers(tutorial)["default"] == {
        "BACKEND": "channels_scale.layer.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:7777/0"]},
    }
    monkeypatch.setenv("CHANNELS_SCALE_LAYER", "channels_redis")
    recipe = stack_channel_layers(project)["default"]
    assert recipe["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    assert recipe["CONFIG"]["hosts"][0]["address"] == "redis://127.0.0.1:7777/0"


def test_hosts_are_described_without_passwords() -> None:
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    config = {"CONFIG": {"hosts": [("127.0.0.1", 6379), {"address": "redis://:pw@h:1"}]}}
    assert describe_hosts(config) == "127.0.0.1:6379, redis://:***@h:1"
    assert describe_hosts({}) == "its default host"


def test_nginx_server_line_goes_down_and_back() -> None:
    conf = (
        "        server unix:/r/sockets/worker-0.sock max_fails=1 fail_timeout=2s;\n"
        "        server unix:/r/sockets/worker-1.sock max_fails=1 fail_timeout=2s;\n"
    )
    down = nginx_with_server_down(conf, Path("/r/sockets/worker-1.sock"), True)
    assert down.splitlines()[1].endswith("fail_timeout=2s down;")
    assert down.splitlines()[0] == conf.splitlines()[0]
    assert nginx_with_server_down(down, Path("/r/sockets/worker-1.sock"), True) == down
    assert nginx_with_server_down(down, Path("/r/sockets/worker-1.sock"), False) == conf
    with pytest.raises(ValueError, match="no server line"):
        nginx_with_server_down(conf, Path("/r/sockets/worker-10.sock"), True)


def test_restart_without_a_stack_says_so(tmp_path: Path) -> None:
    done = run_cli("restart", "--rolling", "--run-dir", str(tmp_path / "none"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"channels-scale: error: no stack was started in {tmp_path / 'none'}: "
        "pass the --run-dir given to up"
    ]
