"""Redis Cluster topology for the cluster broker (pure: no I/O): seed URLs, hash slots, the slot
map and redirect replies.

A ``hosts`` entry ``redis+cluster://[user:password@]host:port[,host:port...][?options]``
(``rediss+cluster://`` for TLS) names *seed* nodes: the broker asks any of them for the slot map
(``CLUSTER SLOTS``) and then talks to each slot's master directly. Options in the query string are
the connection options of :mod:`.wire` and apply to every node. A cluster has no databases: a
path other than ``/`` or ``/0`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from channels_scale.exceptions import ConfigError

SLOTS = 16384
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: bytes | str) -> int:
    """The hash slot of ``key``: only the part inside the first non-empty ``{...}`` counts."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc16(data) % SLOTS


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


@dataclass(frozen=True)
class ClusterSeeds:
    """The seed nodes of a cluster URL and how to reach any node of the cluster."""

    addresses: tuple[str, ...]
    tls: bool
    userinfo: str
    query: str

    def node_url(self, address: str) -> str:
        """A plain ``redis://`` (``rediss://``) URL for one node, with the seed's credentials."""
        scheme = "rediss" if self.tls else "redis"
        auth = f"{self.userinfo}@" if self.userinfo else ""
        query = f"?{self.query}" if self.query else ""
        return f"{scheme}://{auth}{address}/0{query}"

    def describe(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}+cluster://{','.join(self.addresses)}"


def parse_cluster_url(url: str) -> ClusterSeeds:
    """Split a ``redis+cluster://`` URL into its seeds.

    Raises:
        ConfigError: no seed, a seed without a port, or a database other than 0.
    """
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        userinfo, hostlist = "", netloc
    if path.strip("/") not in ("", "0"):
        raise ConfigError(f"{scheme}:// has no databases: drop /{path} from {hostlist!r}")
    addresses = []
    for seed in hostlist.split(","):
        host, _, port = seed.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"cluster seed {seed!r} must be host:port (in {scheme}://{hostlist})")
        addresses.append(f"{host}:{int(port)}")
    user, _, password = userinfo.partition(":")
    if userinfo:  # normalise the quoting once
        userinfo = quote(unquote(user), safe="") + (
            ":" + quote(unquote(password), safe="") if password else ""
        )
    return ClusterSeeds(tuple(addresses), scheme.lower() == "rediss+cluster", userinfo, query)


def cluster_seeds(urls: Sequence[str | None]) -> ClusterSeeds | None:
    """The seeds when ``hosts`` is a cluster URL, None for other topologies.

    Raises:
        ConfigError: a cluster URL mixed with other hosts.
    """
    cluster = [u for u in urls if u is not None and is_cluster_url(u)]
    if not cluster:
        return None
    if len(urls) != 1:
        raise ConfigError(
            "a redis+cluster:// URL must be the only entry of hosts (list every seed in it)"
        )
    return parse_cluster_url(cluster[0])


def parse_redirect(message: str) -> tuple[str, int, str] | None:
    """``("MOVED" | "ASK", slot, "host:port")`` for a redirect error reply, else None."""
    parts = message.split()
    if len(parts) == 3 and parts[0] in ("MOVED", "ASK") and parts[1].isdigit():
        return parts[0], int(parts[1]), parts[2]
    return None


class SlotMap:
    """Which master serves each hash slot, as ``"host:port"``; empty until :meth:`load`."""

    __slots__ = ("masters",)

    def __init__(self) -> None:
        self.masters: list[str | None] = [None] * SLOTS

    @property
    def loaded(self) -> bool:
        return any(m is not None for m in self.masters)

    def load(self, reply: Sequence[Any]) -> None:
        """Fill from a ``CLUSTER SLOTS`` reply ``[[start, end, [ip, port, id, ...], ...], ...]``."""
        masters: list[str | None] = [None] * SLOTS
        for entry in reply:
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            ip = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            address = f"{ip}:{int(master[1])}"
            masters[start : end + 1] = [address] * (end - start + 1)
        self.masters = masters

    def master(self, slot: int) -> str | None:
        return self.masters[slot]

    def moved(self, slot: int, address: str) -> None:
        """A ``MOVED`` reply: ``slot`` is served by ``address`` now."""
        self.masters[slot] = address

    def nodes(self) -> list[str]:
        """Every master, in slot order."""
        return list(dict.fromkeys(m for m in self.masters if m is not None))
