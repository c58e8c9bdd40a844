"""The cluster's own small CA: certificates for the pool, its workers and its clients, made with `cryptography`.

`DATA_DIR/tls/` (0700) holds `ca.pem`, `ca-key.pem`, `pool.pem`, `pool-key.pem` and `client.pem`,
`client-key.pem` (keys 0600). A worker that joined keeps the CA and its own certificate there too
(`worker.pem`, `worker-key.pem`). Keys are ECDSA P-256: small, fast to make, accepted by every TLS stack
gRPC uses.

A worker's certificate names the node (`<node id>.worker.hivemind`) rather than an address: the pool dials
workers wherever they are (a LAN, a VPN, behind NAT) and checks it reaches the node it scheduled on.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hivemind_tui.core.datadir import atomic_write, make_private_dir
from hivemind_tui.core.errors import ConfigError
from hivemind_tui.core.tls_names import CLIENT_NAME, TlsPaths

CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class CertInfo:
    path: str
    subject: str
    names: tuple[str, ...]
    sha256: str
    not_after: float
    is_ca: bool


def default_hosts(vpn_address: str | None = None) -> list[str]:
    hosts = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    if vpn_address:
        hosts.append(vpn_address)
    return hosts


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hivemind-tui"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_names(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip("[]") for h in hosts if h):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(common_name: str = "hivemind-tui cluster CA") -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def sign(
    ca_pem: bytes,
    ca_key_pem: bytes,
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    hosts: list[str],
    days: float = LEAF_DAYS,
    not_before: datetime.datetime | None = None,
) -> bytes:
    """A leaf certificate for `public_key`, good as a TLS server and client, naming `hosts`."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the CA key is not an EC key made by `tls init`")
    start = not_before or _now() - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_alt_names(hosts or [common_name]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def new_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _pem_key(key)


def issue(
    ca_pem: bytes, ca_key_pem: bytes, common_name: str, hosts: list[str], days: float = LEAF_DAYS
) -> tuple[bytes, bytes]:
    """A new key and its certificate: (certificate PEM, key PEM)."""
    key, key_pem = new_key()
    return sign(ca_pem, ca_key_pem, key.public_key(), common_name, hosts, days), key_pem


def csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    """A signing request: a joining worker keeps its key and sends only this."""
    request = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name)).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def csr_public_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        request = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise ConfigError("the certificate request is not a PEM CSR") from None
    key = request.public_key()
    if not request.is_signature_valid or not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("the certificate request is not signed by an EC key")
    return key


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER, hex: what a join token pins."""
    return hashlib.sha256(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)).hexdigest()


def der_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def der_to_pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def info(path: Path) -> CertInfo:
    data = path.read_bytes()
    cert = x509.load_pem_x509_certificate(data)
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(v) for v in alt.get_values_for_type(x509.DNSName)) + tuple(
            str(v) for v in alt.get_values_for_type(x509.IPAddress)
        )
    except x509.ExtensionNotFound:
        names = ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertInfo(
        str(path),
        str(common[0].value) if common else cert.subject.rfc4514_string(),
        names,
        fingerprint(data),
        cert.not_valid_after_utc.timestamp(),
        is_ca,
    )


def write_pair(paths: TlsPaths, name: str, cert_pem: bytes, key_pem: bytes) -> None:
    make_private_dir(paths.root)
    atomic_write(paths.key(name), key_pem, mode=0o600)
    atomic_write(paths.cert(name), cert_pem, mode=0o644)


def init_ca(paths: TlsPaths, hosts: list[str], force: bool = False) -> None:
    """Make the CA, the pool's certificate (naming `hosts`) and this host's client certificate."""
    if paths.ca.exists() and not force:
        raise ConfigError(
            f"a CA already exists in {paths.root}; --force replaces it (every certificate it signed stops working)"
        )
    ca_pem, ca_key_pem = make_ca()
    make_private_dir(paths.root)
    atomic_write(paths.ca_key, ca_key_pem, mode=0o600)
    atomic_write(paths.ca, ca_pem, mode=0o644)
    write_pair(paths, "pool", *issue(ca_pem, ca_key_pem, "hivemind pool", hosts))
    write_pair(paths, CLIENT_NAME, *issue(ca_pem, ca_key_pem, CLIENT_NAME, [CLIENT_NAME]))
