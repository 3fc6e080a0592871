"""Channel names, inbox ids and Redis key names (pure: no I/O).

A process-specific channel made by :meth:`RedisChannelLayer.new_channel` looks like
``"<prefix><inbox>!<token>"``: ``<inbox>`` is the id of the process' (strictly: the event loop's)
inbox, the part Channels calls the "non-local name", and ``<token>`` tells apart the channels of
one process. A send to such a channel goes to the owner's inbox pub/sub channel; the owner routes
it to the channel's local buffer.

Every Redis key and pub/sub channel name is built here, in one place, from the layer prefix.
"""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

INBOX_ID_LENGTH = 12
TOKEN_LENGTH = 12


def random_token(length: int) -> str:
    """A random ``[A-Za-z0-9]`` string (``secrets``: ids must not collide across processes)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_inbox_id() -> str:
    """A fresh inbox id for one process (one event loop of it)."""
    return random_token(INBOX_ID_LENGTH)


def is_process_specific(channel: str) -> bool:
    """True for ``"...!..."`` names: they live in one process, not in a Redis queue."""
    return "!" in channel


def make_channel_name(prefix: str, inbox_id: str, token: str) -> str:
    """``prefix + inbox_id + "!" + token``; a non-empty prefix is separated by a dot."""
    if prefix and not prefix.endswith("."):
        prefix += "."
    return f"{prefix}{inbox_id}!{token}"


#: length of a channel name made by :func:`make_channel_name`, beyond its prefix and dot
CHANNEL_SUFFIX_LENGTH = INBOX_ID_LENGTH + 1 + TOKEN_LENGTH


def inbox_of(channel: str) -> str:
    """The inbox id of a process-specific channel: the segment between the last dot and ``!``.

    Names not made by this layer still map to *some* inbox id; nobody listens on it, so a send
    there is counted as undeliverable instead of failing.
    """
    local = channel[: channel.index("!")]
    return local.rpartition(".")[2]


class Keys:
    """Redis key and pub/sub channel names under one layer prefix.

    The variable part is wrapped in a ``{hash tag}`` so a later Redis Cluster backend can keep the
    same names (each key and channel then lives on the slot of its own name).
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def inbox(self, inbox_id: str) -> str:
        """Pub/sub channel of one process' inbox."""
        return f"{self.prefix}:inbox:{{{inbox_id}}}"

    def group(self, group: str) -> str:
        """Pub/sub channel of a group (one publish per ``group_send``)."""
        return f"{self.prefix}:group:{{{group}}}"

    def queue(self, channel: str) -> str:
        """List holding a normal (non ``!``) channel's messages."""
        return f"{self.prefix}:queue:{{{channel}}}"

    def group_queues(self, group: str) -> str:
        """Sorted set of the normal channels in a group (score: time added)."""
        return f"{self.prefix}:gq:{{{group}}}"

    def history(self, group: str) -> tuple[str, str, str]:
        """The group's history keys: epoch, offset counter and stream (one hash slot)."""
        return (
            f"{self.prefix}:epoch:{{{group}}}",
            f"{self.prefix}:offset:{{{group}}}",
            f"{self.prefix}:stream:{{{group}}}",
        )

    def idempotency(self, group: str, send_id: str) -> str:
        """Short-lived key recording that one ``group_send`` with history was stored (its
        ``send_id`` is the sender's origin and sequence number): a retry finds it."""
        return f"{self.prefix}:idem:{{{group}}}:{send_id}"

    def flush_channel(self) -> str:
        """Pub/sub channel on which ``flush()`` tells every process of the prefix to drop its
        groups and buffered messages."""
        return f"{self.prefix}:flush"

    def presence(self, group: str) -> tuple[str, str, str]:
        """The group's presence keys: connection expiry times (zset), each connection's user
        info (hash) and each user's connection count (hash)."""
        return (
            f"{self.prefix}:presence:{{{group}}}",
            f"{self.prefix}:pinfo:{{{group}}}",
            f"{self.prefix}:pusers:{{{group}}}",
        )

    def pattern(self) -> str:
        """``SCAN MATCH`` pattern for every key of this prefix (for ``flush``)."""
        return f"{self.prefix}:*"
