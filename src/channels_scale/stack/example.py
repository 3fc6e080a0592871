"""The bundled example run from an installed wheel: its data in the run directory, ready to log in.

In a checkout, ``scripts/up`` migrates the example's SQLite file next to the project and creates
the demo users. A wheel's copy lives in site-packages, which is no place for a database (shared by
every run, maybe not writable, removed by an upgrade), and nobody ran ``manage.py`` there. So
``channels-scale up`` with no ``--app``, when the example is the installed copy, does that itself:
the example's settings read :data:`EXAMPLE_DATA_ENV` (the directory of its SQLite file and of its
collected static files), which defaults to ``RUN_DIR/example``; then ``migrate`` and
``ensure_demo_user`` (both idempotent) run with the same settings the workers get.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from channels_scale.exceptions import ConfigError
from channels_scale.net import timeout_factor
from channels_scale.stack.options import EXAMPLE_DIR, EXAMPLE_SETTINGS

#: Read by example/config/settings.py: where its SQLite DB and collected static files go.
EXAMPLE_DATA_ENV = "CHANNELS_SCALE_EXAMPLE_DATA"

#: ``manage.py`` commands that make a fresh example usable: tables, then demo/demo and demo2/demo2.
SETUP_COMMANDS = (("migrate", "--noinput", "-v", "0"), ("ensure_demo_user",))


def prepare_installed_example(run_dir: Path, python: str) -> Path:
    """Point the example's data at ``run_dir/example`` (unless set already) and set it up.

    Sets :data:`EXAMPLE_DATA_ENV` in this process' environment, which the probe and supervisor
    (hence every worker) inherit. Returns the data directory. A failing command raises
    :class:`ConfigError` with its last line of output.
    """
    data = Path(os.environ.get(EXAMPLE_DATA_ENV) or run_dir / "example").resolve()
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"the example's data directory {data} cannot be made ({exc.strerror}): "
            f"choose another with --run-dir or {EXAMPLE_DATA_ENV}"
        ) from None
    os.environ[EXAMPLE_DATA_ENV] = str(data)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": EXAMPLE_SETTINGS}
    for command in SETUP_COMMANDS:
        done = subprocess.run(
            [python, str(EXAMPLE_DIR / "manage.py"), *command],
            env=env, capture_output=True, text=True, timeout=120 * timeout_factor(), check=False,
        )  # fmt: skip
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
            raise ConfigError(f"the example's `manage.py {command[0]}` failed: {lines[-1]}")
    return data
