"""Every exception channels-scale raises derives from :class:`ChannelsScaleError`.

::

    ChannelsScaleError
    ├── ConfigError          bad input to a command or a layer config (the CLI exits 2)
    ├── StackError           the stack could not be started, checked or stopped
    └── LayerError           raised by the channel layer (channels_scale.layer)
        ├── ChannelFull      a channel is at capacity (also channels.exceptions.ChannelFull)
        ├── MessageTooLarge  an encoded message is over the layer's max_message_size
        ├── ChannelNotLocal  receive() on a channel of another process or event loop
        └── LayerUnavailable Redis stayed unreachable for the whole send_timeout
"""

from __future__ import annotations

from channels.exceptions import ChannelFull as _ChannelsChannelFull


class ChannelsScaleError(Exception):
    """Root of every channels-scale exception."""


class ConfigError(ChannelsScaleError, ValueError):
    """Bad input: an unknown option value, an unreachable service, a path that cannot be used.

    The message is one line that says what is wrong and how to fix it; the CLI prints it and exits
    with code 2.
    """


class StackError(ChannelsScaleError, RuntimeError):
    """The stack could not be brought up, checked or stopped; the message says which part failed."""


class LayerError(ChannelsScaleError):
    """Root of the errors raised by :mod:`channels_scale.layer`."""


class ChannelFull(LayerError, _ChannelsChannelFull):  # type: ignore[misc]
    """``send()`` found the channel at its capacity; the message was not queued.

    It is also a :class:`channels.exceptions.ChannelFull`, so code written for Channels catches it.
    Only sends whose outcome the sender can know raise it: a send to a normal (queue) channel, or
    to a process-specific channel of the sending process. Deliveries through pub/sub (group
    messages, sends to another process' channels) apply the receiver's overflow policy instead
    and are counted.
    """


class MessageTooLarge(LayerError, ValueError):
    """The encoded message is larger than the layer's ``max_message_size``; nothing was sent."""


class ChannelNotLocal(LayerError, ValueError):
    """``receive()`` on a process-specific channel (``!``) made by another process or event loop.

    Only the event loop that made a ``new_channel()`` name can receive on it; waiting there
    would wait forever, so the layer raises at once.
    """


class LayerUnavailable(LayerError, ConnectionError):
    """Redis could not be reached for the whole ``send_timeout``; the message was not sent.

    Raised by ``send``, ``group_send``, ``group_add``/``group_discard`` of channels that live in
    another process, and ``flush``. Never raised by ``receive()``: receivers wait for Redis to
    come back.
    """
