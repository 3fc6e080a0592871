"""The layer over TLS (``rediss://``), against a real TLS-only redis-server.

A throwaway CA, a server certificate for 127.0.0.1 and a client certificate are made in
``tmp_path`` with ``cryptography``; a second CA that signed nothing stands for a wrong trust
anchor. Every path of the layer goes through TLS: the pipelined connection (``group_send``'s
script, ``send``), redis-py's pools (group records, blocking pops) and the pub/sub reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from channels_scale.exceptions import ConfigError, LayerUnavailable
from channels_scale.layer import RedisChannelLayer
from tests.conftest import RedisProcess, RedisTLS
from tests.layer.test_contract import recv


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _builder(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _make_ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_cert(cert, directory / f"{name}.pem")
    return cert, key


def _make_leaf(
    directory: Path,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usages: list[x509.ObjectIdentifier],
) -> tuple[Path, Path]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name, ca_cert.subject.rfc4514_string().removeprefix("CN="), key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _write_cert(cert, directory / f"{name}.pem"), _write_key(key, directory / f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _make_ca(directory, "test-ca")
    # the server's pair also serves as a client pair: RedisProcess' readiness probe presents it
    server_cert, server_key = _make_leaf(
        directory, "server", ca, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    client_cert, client_key = _make_leaf(directory, "client", ca, [ExtendedKeyUsageOID.CLIENT_AUTH])
    _make_ca(directory, "wrong-ca")
    return Pki(
        directory / "test-ca.pem",
        server_cert,
        server_key,
        client_cert,
        client_key,
        directory / "wrong-ca.pem",
    )


def _tls_server(workdir: Path, pki: Pki, auth_clients: str) -> Iterator[RedisProcess]:
    server = RedisProcess(
        workdir,
        tls=RedisTLS(pki.server_cert, pki.server_key, pki.ca, auth_clients=auth_clients),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def tls_redis(tmp_path: Path, pki: Pki) -> Iterator[RedisProcess]:
    """A TLS-only redis-server that does not ask for client certificates."""
    yield from _tls_server(tmp_path, pki, "no")


@pytest.fixture
def mtls_redis(tmp_path: Path, pki: Pki) -> Iterator[RedisProcess]:
    """A TLS-only redis-server that requires a client certificate signed by the test CA."""
    yield from _tls_server(tmp_path, pki, "yes")


async def _round_trip(here: RedisChannelLayer, there: RedisChannelLayer, tag: str) -> None:
    """A group member of ``here`` receives ``there``'s group_send (through Redis pub/sub), and a
    normal channel's message goes through the queue (redis-py's blocking pool)."""
    channel = await here.new_channel()
    await here.group_add(f"{tag}-room", channel)
    await there.group_send(f"{tag}-room", {"type": "over tls", "tag": tag})
    assert await recv(here, channel) == {"type": "over tls", "tag": tag}
    await there.send(f"{tag}-queue", {"type": "queued"})
    assert await recv(here, f"{tag}-queue") == {"type": "queued"}
    await here.group_discard(f"{tag}-room", channel)


async def test_round_trip_with_ca_from_the_url(tls_redis: RedisProcess, pki: Pki) -> None:
    url = f"{tls_redis.url}?ssl_ca_certs={pki.ca}&ssl_cert_reqs=required"
    here, there = RedisChannelLayer(hosts=[url]), RedisChannelLayer(hosts=[url])
    try:
        await _round_trip(here, there, "url")
    finally:
        await here.close()
        await there.close()


async def test_round_trip_with_options_in_the_host_dict(tls_redis: RedisProcess, pki: Pki) -> None:
    host = {"address": tls_redis.url, "ssl_ca_certs": str(pki.ca), "ssl_cert_reqs": "required"}
    here, there = RedisChannelLayer(hosts=[host]), RedisChannelLayer(hosts=[host])
    try:
        await _round_trip(here, there, "dict")
    finally:
        await here.close()
        await there.close()


async def test_wrong_ca_is_a_clear_layer_unavailable(tls_redis: RedisProcess, pki: Pki) -> None:
    url = f"{tls_redis.url}?ssl_ca_certs={pki.wrong_ca}"
    layer = RedisChannelLayer(hosts=[url], send_timeout=0.5)
    try:
        with pytest.raises(LayerUnavailable) as raised:
            await layer.group_send("room", {"type": "never"})
        text = str(raised.value)
        assert f"127.0.0.1:{tls_redis.port}" in text
        assert "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text
    finally:
        await layer.close()


async def test_plain_redis_url_to_a_tls_port_is_unavailable(tls_redis: RedisProcess) -> None:
    """The premise of the tests above: the server speaks only TLS on that port."""
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{tls_redis.port}/0"], send_timeout=0.5)
    try:
        with pytest.raises(LayerUnavailable, match=f"127.0.0.1:{tls_redis.port}"):
            await layer.group_send("room", {"type": "never"})
    finally:
        await layer.close()


async def test_client_certificate(mtls_redis: RedisProcess, pki: Pki) -> None:
    base = f"{mtls_redis.url}?ssl_ca_certs={pki.ca}"
    with_cert = f"{base}&ssl_certfile={pki.client_cert}&ssl_keyfile={pki.client_key}"
    here, there = RedisChannelLayer(hosts=[with_cert]), RedisChannelLayer(hosts=[with_cert])
    without = RedisChannelLayer(hosts=[base], send_timeout=0.5)
    try:
        await _round_trip(here, there, "mtls")
        with pytest.raises(LayerUnavailable, match=f"127.0.0.1:{mtls_redis.port}"):
            await without.group_send("room", {"type": "never"})
    finally:
        await here.close()
        await there.close()
        await without.close()


async def test_pubsub_reader_reconnects_over_tls(tls_redis: RedisProcess, pki: Pki) -> None:
    """The pub/sub reader's own TLS connection survives a Redis restart: it reconnects, redoes
    the TLS handshake and resubscribes the group."""
    url = f"{tls_redis.url}?ssl_ca_certs={pki.ca}"
    here, there = RedisChannelLayer(hosts=[url]), RedisChannelLayer(hosts=[url])
    try:
        channel = await here.new_channel()
        await here.group_add("reader-room", channel)
        await there.group_send("reader-room", {"type": "before"})
        assert await recv(here, channel) == {"type": "before"}
        tls_redis.restart()
        # messages published before the reader resubscribed are lost (pub/sub: at most once):
        # send until one arrives, bounded
        received: dict[str, Any] | None = None
        for attempt in range(100):
            await there.group_send("reader-room", {"type": "after", "n": attempt})
            try:
                received = await recv(here, channel, within=0.2)
                break
            except TimeoutError:
                continue
        assert received is not None and received["type"] == "after"
    finally:
        await here.close()
        await there.close()


@pytest.mark.parametrize(
    "host",
    [
        # channels_redis' documented form (docs/migrating.md): redis-py reads None as CERT_NONE
        pytest.param(lambda url: {"address": url, "ssl_cert_reqs": None}, id="dict-None"),
        pytest.param(lambda url: f"{url}?ssl_cert_reqs=none", id="url-none"),
    ],
)
async def test_unverified_server_certificate(tls_redis: RedisProcess, host: Any) -> None:
    """``ssl_cert_reqs`` none: encrypted, the server's certificate not checked (no CA given)."""
    here = RedisChannelLayer(hosts=[host(tls_redis.url)])
    there = RedisChannelLayer(hosts=[host(tls_redis.url)])
    try:
        await _round_trip(here, there, "unverified")
    finally:
        await here.close()
        await there.close()


async def test_unknown_cert_reqs_is_a_config_error(tls_redis: RedisProcess) -> None:
    layer = RedisChannelLayer(hosts=[f"{tls_redis.url}?ssl_cert_reqs=sometimes"], send_timeout=0.5)
    try:
        with pytest.raises(ConfigError, match="ssl_cert_reqs must be one of"):
            await layer.group_send("room", {"type": "never"})
    finally:
        await layer.close()


def _open_sockets() -> set[str]:
    """The sockets this process holds open (``/proc/self/fd`` links ``socket:[inode]``)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd is gone by now
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


def test_closing_over_tls_leaves_no_socket_when_the_loop_ends(tls_redis: RedisProcess) -> None:
    """``close()`` and then the event loop closes at once (asgiref's temporary loops, a test's
    loop): every socket of the layer is closed. A TLS transport's ``close()`` waits for Redis'
    ``close_notify`` before closing its socket; the pipe used it, so its socket outlived the
    loop until the garbage collector found it (``ResourceWarning``: unclosed socket and
    transport, reported in whichever test ran then). The collector is off here, so a leaked
    socket stays visible in ``/proc/self/fd``."""
    url = f"{tls_redis.url}?ssl_cert_reqs=none"

    async def use_and_close() -> None:
        here, there = RedisChannelLayer(hosts=[url]), RedisChannelLayer(hosts=[url])
        try:
            await _round_trip(here, there, "leak")
        finally:
            await here.close()
            await there.close()

    gc.collect()
    gc.disable()
    try:
        before = _open_sockets()
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(use_and_close())
        finally:
            loop.close()
        assert _open_sockets() - before == set()
    finally:
        gc.enable()
