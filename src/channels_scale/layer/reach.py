"""Does every Redis of a ``hosts`` list answer? One check for ``up``'s preflight and ``/readyz``.

Through the layer's own connections (:mod:`.pipe`, :mod:`.wire`), so a host is reached exactly as
the layer reaches it: TLS, AUTH, ``SELECT``, and for a ``redis+sentinel://`` host the master the
sentinels name (``ROLE`` must say master). Per topology:

- a ``redis://``/``rediss://``/``unix://`` host or a host dict: ``PING`` (every shard);
- a ``redis+cluster://`` host: every seed answers ``CLUSTER INFO`` with ``cluster_state:ok`` (a
  plain Redis refuses ``CLUSTER INFO``: it is not a cluster node);
- a ``redis+sentinel://`` host: ``PING`` on the master found through Sentinel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from channels_scale.layer.cluster import is_cluster_url, parse_cluster_url
from channels_scale.layer.config import HostConfig
from channels_scale.layer.pipe import CommandPipe, ReplyError, encode


class Unreachable(ConnectionError):
    """A host does not answer as it should; the message names it (without its password)."""


async def _ask(host: HostConfig, per_command: float, *command: str) -> object:
    pipe = CommandPipe(host, per_command)
    try:
        async with asyncio.timeout(per_command):
            reply = await pipe.request(encode(*command))
    except (OSError, TimeoutError) as exc:
        raise Unreachable(
            f"Redis at {host.describe()} does not answer ({exc or type(exc).__name__})"
        ) from None
    finally:
        pipe.close()
    if isinstance(reply, ReplyError):
        raise Unreachable(f"Redis at {host.describe()} refused {command[0]}: {reply}")
    return reply


async def reach_host(host: HostConfig, per_command: float) -> None:
    """Check one ``hosts`` entry (see the module docstring).

    Raises:
        Unreachable: the host, a seed or the master does not answer, refuses, or (a cluster) is
            not ``cluster_state:ok``.
    """
    if host.url is None or not is_cluster_url(host.url):
        await _ask(host, per_command, "PING")
        return
    seeds = parse_cluster_url(host.url)
    for address in seeds.addresses:
        node = HostConfig(seeds.node_url(address), host.kwargs)
        info = await _ask(node, per_command, "CLUSTER", "INFO")
        text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
        state = next((line for line in text.splitlines() if line.startswith("cluster_state:")), "")
        if state.strip() != "cluster_state:ok":
            raise Unreachable(
                f"Redis Cluster node {address} of {seeds.describe()} is not ready "
                f"({state.strip() or 'no cluster_state'})"
            )


async def reach_all(hosts: Iterable[HostConfig], per_command: float) -> None:
    """:func:`reach_host` for each host in turn; the first problem is raised."""
    for host in hosts:
        await reach_host(host, per_command)
