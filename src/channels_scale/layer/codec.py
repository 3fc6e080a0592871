"""Wire format of the layer (pure: no I/O): one msgpack array per frame.

A frame is ``[kind, origin, seq, expires_at, target, payload]``:

- ``kind``: :data:`MESSAGE` (to one channel), :data:`GROUP` (to every member of a group),
  :data:`GROUP_ADD` / :data:`GROUP_DISCARD` (control messages routed to a channel's owner),
  :data:`GROUP_ADDED` (the owner's acknowledgement of a ``GROUP_ADD``, once subscribed);
- ``origin``: the sending inbox id (a process' event loop), ``seq``: its per-destination counter,
  used by receivers to count messages lost in a gap (see :class:`~.stats.GapDetector`);
- ``expires_at``: UNIX time after which the message is dropped instead of delivered;
- ``target``: the channel name (MESSAGE, GROUP_ADD, GROUP_DISCARD, GROUP_ADDED) or the group
  name (GROUP);
- ``payload``: the message dict, or the group name for control frames.

Group messages of groups with history carry two more items, ``offset`` and ``epoch``, appended by
the server-side script that stores and publishes them (see :mod:`.history`).

The whole frame is packed once per ``send``/``group_send`` and unpacked once per receiving
process, whatever the number of local members.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from channels_scale.exceptions import MessageTooLarge

MESSAGE = 0
GROUP = 1
GROUP_ADD = 2
GROUP_DISCARD = 3
#: sent to every process of a prefix by ``flush()``: drop local groups and buffered messages
FLUSH = 4
#: a channel's owner to the process that sent it a :data:`GROUP_ADD`: joined and subscribed
GROUP_ADDED = 5

Message = dict[str, Any]

_packb = msgpack.packb
#: msgpack fixarray header of a 6-item frame
_FRAME_HEADER = b"\x96"


class Frame(NamedTuple):
    """A decoded frame."""

    kind: int
    origin: str
    seq: int
    expires_at: float
    target: str
    payload: Any
    #: group history (see :mod:`.history`): the message's offset and its group's epoch
    offset: int = 0
    epoch: str = ""


def pack_frame(
    kind: int,
    origin: str,
    seq: int,
    expires_at: float,
    target: str,
    payload: Any,
    max_size: int,
) -> bytes:
    """Encode a frame.

    ``max_size`` bounds the encoded *payload*, not the frame: every path (local copy, inbox,
    queue, group, group with history) then accepts exactly the same largest message, whatever
    the length of the channel or group name around it.

    Raises:
        MessageTooLarge: the encoded payload is over ``max_size`` bytes.
        TypeError: the payload holds something msgpack cannot encode.
    """
    body: bytes = _packb(payload, use_bin_type=True)
    if len(body) > max_size:
        raise MessageTooLarge(
            f"message is {len(body)} bytes encoded, over max_message_size={max_size}"
        )
    # a msgpack array is its header followed by its items: pack the first five items as a
    # 5-array, turn its header into the 6-array's, append the payload already packed
    head: bytes = _packb([kind, origin, seq, expires_at, target], use_bin_type=True)
    return _FRAME_HEADER + head[1:] + body


def group_frame_prefix(origin: str) -> bytes:
    """The bytes that follow the array header in every :data:`GROUP` frame ``origin`` packs
    (with or without history): a receiver recognises its own group messages by them without
    decoding the frame."""
    kind: bytes = _packb(GROUP)
    origin_packed: bytes = _packb(origin, use_bin_type=True)
    return kind + origin_packed


def unpack_frame(data: bytes) -> Frame:
    """Decode a frame.

    Raises:
        ValueError: ``data`` is not a frame of this layer.
    """
    try:
        items = msgpack.unpackb(data, raw=False, strict_map_key=False)
        return Frame(*items)
    except (TypeError, ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a channels_scale frame: {exc}") from exc


def copy_message(message: Message, max_size: int) -> Message:
    """A deep copy of ``message`` through the codec, as a remote receiver would see it.

    Used for sends inside one process, so the receiver never shares objects with the sender and
    the same size and type rules apply as for remote sends.
    """
    data: bytes = _packb(message, use_bin_type=True)
    if len(data) > max_size:
        raise MessageTooLarge(
            f"message is {len(data)} bytes encoded, over max_message_size={max_size}"
        )
    copied: Message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    return copied
