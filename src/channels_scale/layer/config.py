"""Layer configuration: parsing and checking the ``CONFIG`` dict (pure: no I/O).

``hosts`` accepts what channels_redis accepts: ``redis://``/``rediss://``/``unix://`` URL strings
(password, ACL user, db and TLS come from the URL), ``(host, port)`` pairs, and dicts, either
``{"address": url, **pool_kwargs}`` or ``{"host": ..., "port": ..., **pool_kwargs}``. Several
hosts are independent shards chosen by jump consistent hash. A ``redis+sentinel://`` URL is the
master that Sentinel names (:mod:`.sentinel`); Sentinel host dicts (channels_redis' form) are
refused with a clear error instead of being misread. One ``redis+cluster://`` URL (see
:mod:`.cluster`) selects the Redis Cluster broker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from channels_scale.exceptions import ConfigError
from channels_scale.layer.buffer import OverflowPolicy
from channels_scale.layer.cluster import CLUSTER_SCHEMES, cluster_seeds
from channels_scale.layer.history import HistoryPolicy
from channels_scale.layer.sentinel import is_sentinel_url, parse_sentinel_url

DEFAULT_HOST = "redis://localhost:6379"
_URL_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)


@dataclass(frozen=True)
class HostConfig:
    """One shard: a URL (or None) plus keyword arguments for the redis-py connection pool."""

    url: str | None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Where this host is, without its password (for logs and errors)."""
        if is_sentinel_url(self.url):
            return parse_sentinel_url(str(self.url)).describe()
        if self.url is not None:
            if self.url.partition("://")[0] in CLUSTER_SCHEMES:
                return cluster_seeds([self.url]).describe()  # type: ignore[union-attr]
            parsed = urlparse(self.url)
            netloc = parsed.hostname or parsed.path
            database = parsed.path if parsed.hostname else ""  # a unix path is the netloc
            return f"{parsed.scheme}://{netloc}:{parsed.port or ''}{database}"
        return f"{self.kwargs.get('host', 'localhost')}:{self.kwargs.get('port', 6379)}"


def _check_url(url: str) -> str:
    if is_sentinel_url(url):
        try:
            parse_sentinel_url(url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return url
    scheme = urlparse(url).scheme
    if scheme not in _URL_SCHEMES:
        raise ConfigError(
            f"Redis host URL {url!r} must start with redis://, rediss://, unix://, "
            "redis+cluster://, rediss+cluster:// or redis+sentinel://"
        )
    return url


#: a comma that starts another URL (a cluster's or Sentinel's own host list has no scheme)
_NEXT_URL = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


def split_hosts(text: str) -> list[str]:
    """The ``hosts`` entries of one comma-separated string of URLs (``up --redis``, the stack's
    ``CHANNELS_SCALE_REDIS_URL``): ``redis://a/0,redis://b/0`` is two shards, while the commas of
    ``redis+cluster://a:1,b:2`` and ``redis+sentinel://a:1,b:2/name`` separate that URL's own
    hosts. Check the result with :func:`decode_hosts`."""
    return [part.strip() for part in _NEXT_URL.split(text.strip()) if part.strip()]


def decode_hosts(hosts: Any) -> tuple[HostConfig, ...]:
    """Normalise the ``hosts`` option into one :class:`HostConfig` per shard.

    Raises:
        ConfigError: a bare string instead of a list, an unknown entry type, a bad URL scheme, or
            a Sentinel config (not supported yet).
    """
    if not hosts:
        return (HostConfig(DEFAULT_HOST),)
    if isinstance(hosts, (str, bytes)):
        raise ConfigError("hosts must be a list of Redis hosts, even if there is only one")
    result: list[HostConfig] = []
    for entry in hosts:
        if isinstance(entry, str):
            result.append(HostConfig(_check_url(entry)))
        elif isinstance(entry, Mapping):
            kwargs = dict(entry)
            if "master_name" in kwargs or "sentinels" in kwargs:
                raise ConfigError(
                    "Redis Sentinel host dicts are not supported: use a URL "
                    "redis+sentinel://host:port[,host:port...]/master_name"
                )
            address = kwargs.pop("address", None)
            if address is not None:
                if not isinstance(address, str):
                    raise ConfigError(f"host address must be a URL string, not {address!r}")
                result.append(HostConfig(_check_url(address), kwargs))
            else:
                result.append(HostConfig(None, kwargs))
        elif isinstance(entry, Sequence) and len(entry) == 2:
            result.append(HostConfig(None, {"host": entry[0], "port": int(entry[1])}))
        else:
            raise ConfigError(f"cannot understand Redis host {entry!r}")
    cluster_seeds([h.url for h in result])  # a cluster URL is checked here, used by the broker
    return tuple(result)


def _positive(name: str, value: Any, *, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}")
    return value


BROKERS = ("redis", "memory")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class LayerConfig:
    """Every option of :class:`~channels_scale.layer.RedisChannelLayer`, checked."""

    hosts: tuple[HostConfig, ...] = (HostConfig(DEFAULT_HOST),)
    prefix: str = "asgi"
    expiry: float = 60
    group_expiry: int = 86400
    capacity: int = 100
    max_message_size: int = 1024 * 1024
    send_timeout: float = 10.0
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    overflow_notice_type: str | None = None
    pool_size: int = 64
    health_check_interval: float = 5.0
    backoff_base: float = 0.05
    backoff_cap: float = 5.0
    history: HistoryPolicy = field(default_factory=HistoryPolicy)
    #: where messages travel: ``"redis"`` (the hosts) or ``"memory"`` (one process, no Redis)
    broker: str = "redis"

    @classmethod
    def build(cls, **options: Any) -> LayerConfig:
        """Check ``options`` (the layer's keyword arguments, minus ``channel_capacity``).

        Raises:
            ConfigError: an unknown option or a bad value.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown channel layer option(s): {', '.join(unknown)}")
        if "hosts" in options:
            options["hosts"] = decode_hosts(options["hosts"])
        if "history" in options:
            options["history"] = HistoryPolicy.parse(options["history"])
        if "overflow" in options:
            options["overflow"] = OverflowPolicy.parse(options["overflow"])
        prefix = options.get("prefix", cls.prefix)
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            raise ConfigError("prefix must be a non-empty string of letters, digits, _ . -")
        for name in (
            "expiry",
            "send_timeout",
            "health_check_interval",
            "backoff_base",
            "backoff_cap",
        ):
            if name in options:
                _positive(name, options[name])
        for name in ("group_expiry", "capacity", "max_message_size", "pool_size"):
            if name in options:
                _positive(name, options[name], integer=True)
        if options.get("broker", cls.broker) not in BROKERS:
            raise ConfigError(
                f"broker must be one of {', '.join(BROKERS)}, not {options['broker']!r}"
            )
        notice = options.get("overflow_notice_type")
        if notice is not None and not isinstance(notice, str):
            raise ConfigError("overflow_notice_type must be a message type string or None")
        return cls(**options)
