"""Every exception channels-scale raises derives from :class:`ChannelsScaleError`.

::

    ChannelsScaleError
    ├── ConfigError          bad input to a command or a layer config (the CLI exits 2)
    └── StackError           the stack could not be started, checked or stopped
"""

from __future__ import annotations


class ChannelsScaleError(Exception):
    """Root of every channels-scale exception."""


class ConfigError(ChannelsScaleError, ValueError):
    """Bad input: an unknown option value, an unreachable service, a path that cannot be used.

    The message is one line that says what is wrong and how to fix it; the CLI prints it and exits
    with code 2.
    """


class StackError(ChannelsScaleError, RuntimeError):
    """The stack could not be brought up, checked or stopped; the message says which part failed."""
