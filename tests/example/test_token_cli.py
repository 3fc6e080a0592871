"""``channels-scale token``: a token from the command line, checked by the app's own code."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import EXAMPLE


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_token_command(example_env: dict[str, str]) -> None:
    env = {**example_env, "SECRET_KEY": "k" * 50}
    manage = [sys.executable, str(EXAMPLE / "manage.py")]
    assert run([*manage, "migrate", "-v", "0"], env).returncode == 0
    assert run([*manage, "ensure_demo_user"], env).returncode == 0
    cli = [sys.executable, "-m", "channels_scale.cli", "token"]
    issued = run([*cli, "--user", "demo", "--audience", "chat", "--ttl", "60"], env)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    check = (
        "import django, sys; django.setup();"
        "from channels_scale.auth import verify_token;"
        "from django.contrib.auth.models import User;"
        "print(User.objects.get(pk=verify_token(sys.argv[1], 'chat')).username)"
    )
    verified = run([sys.executable, "-c", check, token], env)
    assert verified.stdout.strip() == "demo", verified.stderr
    other_key = run([sys.executable, "-c", check, token], {**env, "SECRET_KEY": "o" * 50})
    assert other_key.returncode != 0 and "bad signature" in other_key.stderr
    unknown = run([*cli, "--user", "nobody", "--audience", "chat"], env)
    assert (unknown.returncode, unknown.stderr) == (2, "channels-scale: error: no user 'nobody'\n")
    bad_ttl = run([*cli, "--user", "demo", "--audience", "chat", "--ttl", "-1"], env)
    assert bad_ttl.returncode == 2
