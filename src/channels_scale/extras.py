"""Optional extras of the distribution and the one-line answer when one is missing.

The base install (``pip install channels-scale``) is what a Django project needs at run time: the
layer, the consumers, history/recovery, presence and ``client.js``. The command-line tools need
more (pyproject.toml's ``[project.optional-dependencies]``); each command checks its extra before
importing the module that needs it, so a missing one reads::

    channels-scale: error: channels-scale bench needs the bench extra:
    pip install 'channels-scale[bench]'

(on one line, exit 2, like any other bad input) instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any

from channels_scale.exceptions import ConfigError

EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("uvicorn", "supervisor", "rich", "dj_database_url"),
    "daphne": ("daphne",),
    # channels_redis: the `recipe`/`pubsub` stacks, and `up --layer channels_redis[_pubsub]`.
    "bench": ("websockets", "picows", "hdrh", "matplotlib", "rich", "uvloop", "channels_redis"),
    "postgres": ("psycopg",),
}
"""Extra name -> the top-level modules it provides (kept in step with pyproject.toml)."""


class MissingExtra(ConfigError):
    """A command needs an extra that is not installed."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty: the extra is installed)."""
    return [name for name in EXTRAS[extra] if find_spec(name) is None]


def require(extra: str, command: str) -> None:
    """Raise :class:`MissingExtra` naming ``extra`` when one of its modules is missing.

    ``command`` is what the user ran, e.g. ``channels-scale up``.
    """
    if missing_modules(extra):
        raise _missing(extra, command)


def _missing(extra: str, command: str) -> MissingExtra:
    return MissingExtra(f"{command} needs the {extra} extra: pip install 'channels-scale[{extra}]'")


def placeholder(name: str, extra: str, help: str) -> Callable[[Any], None]:
    """A ``register(subparsers)`` for ``name`` that only says which extra to install.

    Used when the subcommand's own module cannot be imported (its extra is missing): the command
    still shows in ``--help``, and running it with any arguments exits 2 with the one line.
    """

    def register(subparsers: Any) -> None:
        # No option prefix at all: every argument, ``--help`` included, is taken as-is, so any
        # command line of the real subcommand gets the one-line answer.
        command = subparsers.add_parser(
            name, help=f"{help} (needs the {extra} extra)", add_help=False, prefix_chars="\0"
        )
        command.add_argument("rest", nargs=argparse.REMAINDER)

        def run(args: argparse.Namespace) -> int:
            raise _missing(extra, f"channels-scale {name}")

        command.set_defaults(func=run)

    return register
