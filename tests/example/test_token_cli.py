"""``channels-scale token``: a token from the command line, checked by the app's own code."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import EXAMPLE

SETUP = (
    "import django; django.setup(); from django.core.management import call_command;"
    "call_command('migrate', verbosity=0); call_command('ensure_demo_user')"
)
# Verified with the app's SECRET_KEY, then refused with another key.
CHECK = (
    "import django, sys; django.setup(); from django.core import signing;"
    "from channels_scale.auth import TOKEN_SALT, verify_token;"
    "from django.contrib.auth.models import User;"
    "print(User.objects.get(pk=verify_token(sys.argv[1], 'chat')).username);"
    "signing.loads(sys.argv[1], key='o' * 50, salt=TOKEN_SALT)"
)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_token_command(example_env: dict[str, str]) -> None:
    env = {**example_env, "SECRET_KEY": "k" * 50, "PYTHONPATH": str(EXAMPLE)}
    assert run([sys.executable, "-c", SETUP], env).returncode == 0
    cli = [sys.executable, "-m", "channels_scale.cli", "token"]
    issued = run([*cli, "--user", "demo", "--audience", "chat", "--ttl", "60"], env)
    assert issued.returncode == 0, issued.stderr
    checked = run([sys.executable, "-c", CHECK, issued.stdout.strip()], env)
    assert checked.stdout.strip() == "demo", checked.stderr
    assert "BadSignature" in checked.stderr  # another SECRET_KEY refuses it
    unknown = run([*cli, "--user", "nobody", "--audience", "chat"], env)
    assert (unknown.returncode, unknown.stderr) == (2, "channels-scale: error: no user 'nobody'\n")
    bad_ttl = run([*cli, "--user", "demo", "--audience", "chat", "--ttl", "-1"], env)
    assert (bad_ttl.returncode, bad_ttl.stdout) == (2, "")
