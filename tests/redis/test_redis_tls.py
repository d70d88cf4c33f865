"""``rediss://``: TLS to Redis, verified against the CA the URL (or a keyword) names."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis_workers import IDENTITY, token

from deviceauth._exceptions import CacheError
from deviceauth._redisstore import RedisStore
from deviceauth._store import Written


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deviceauth test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = directory / "server.crt", directory / "server.key", directory / "ca.crt"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(_pem_key(key))
    paths[1].chmod(0o600)
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[redis_server.RedisServer, Path]]:
    if not redis_server.available():
        pytest.skip(f"{redis_server.REDIS_SERVER} is missing")
    cert, key, ca = _certificates(tmp_path_factory.mktemp("tls"))
    with redis_server.RedisServer(tls=(cert, key, ca)) as srv:
        yield srv, ca


def test_rediss_with_the_ca_from_the_url(tls_server: tuple[redis_server.RedisServer, Path]) -> None:
    srv, ca = tls_server
    url = f"rediss://deviceauth:{srv.password}@localhost:{srv.tls_port}/0?ssl_ca_certs={ca}"
    store = RedisStore(url)
    assert store.location == f"rediss://deviceauth@localhost:{srv.tls_port}/0/deviceauth:"
    with store.transaction(IDENTITY) as tx:
        assert not isinstance(tx, Written)
        tx.put(token("tls"), replacing=None)
    keyword = RedisStore(f"rediss://deviceauth:{srv.password}@127.0.0.1:{srv.tls_port}/0", ssl_ca_certs=str(ca))
    assert keyword.read(IDENTITY) == store.read(IDENTITY)


def test_rediss_refuses_a_server_it_cannot_verify(tls_server: tuple[redis_server.RedisServer, Path]) -> None:
    srv, _ = tls_server
    store = RedisStore(f"rediss://deviceauth:{srv.password}@localhost:{srv.tls_port}/0", socket_timeout=3)
    with pytest.raises(CacheError, match="TLS") as caught:
        store.read(IDENTITY)
    assert srv.password not in str(caught.value)
