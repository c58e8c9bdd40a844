"""Why a TLS connection to a pool fails, in one line: gRPC only says UNAVAILABLE, whatever the cause.

One handshake with Python's `ssl` and the same trust as the channel names the cause: a pool that speaks
TLS to a plaintext client, a plaintext pool, a certificate from another CA, an expired one, one that does
not name the host, or a pool that wants a client certificate.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROBE_TIMEOUT = 3.0
# OpenSSL's X509_V_ERR_* codes that have a cause worth naming.
CERT_EXPIRED = 10
CERT_NOT_YET_VALID = 9
HOSTNAME_MISMATCH = (62, 64)  # host name, IP address
UNKNOWN_ISSUER = (2, 18, 19, 20, 21)


@dataclass(frozen=True)
class ChannelSecurity:
    """What a client trusts and shows: the CA's PEM and, for mutual TLS, its own certificate and key."""

    ca: bytes
    ca_source: str
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _load_client_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:  # ssl loads a key only from a file
        cert_path, key_path = Path(folder) / "c.pem", Path(folder) / "k.pem"
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        context.load_cert_chain(cert_path, key_path)


def _speaks_tls(host: str, port: int) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), PROBE_TIMEOUT) as raw, context.wrap_socket(raw):
            return True
    except (OSError, ssl.SSLError):
        return False


def _client_refused(address: str, security: ChannelSecurity) -> str:
    if security.cert is None:
        return (
            f"the pool at {address} accepts only clients with a certificate of its CA "
            "(set tls_client_cert and tls_client_key, e.g. from `hivemind-tui tls issue`)"
        )
    return f"the pool at {address} refused this side's client certificate (is it from the pool's CA?)"


def diagnose(address: str, security: ChannelSecurity | None) -> str | None:
    """The cause of a failed connection to `address` if it is TLS's, else None (the pool is just away)."""
    try:
        host, port = split_address(address)
    except ValueError:
        return None
    if security is None:
        if _speaks_tls(host, port):
            return (
                f"the pool at {address} speaks TLS and this side does not: set tls_ca to its CA (or join with a token)"
            )
        return None
    context = ssl.create_default_context(cadata=security.ca.decode())
    context.set_alpn_protocols(["h2"])
    if security.cert and security.key:
        _load_client_pair(context, security.cert, security.key)
    name = security.server_name or host
    try:
        with (
            socket.create_connection((host, port), PROBE_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            # Under TLS 1.3 a server refuses a client certificate (or its absence) after the handshake,
            # with an alert or (gRPC's BoringSSL) by closing; a pool that accepts waits for HTTP/2.
            tls.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                if tls.recv(1) == b"":
                    return _client_refused(address, security)
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code == CERT_EXPIRED:
            return f"the certificate of the pool at {address} has expired"
        if exc.verify_code == CERT_NOT_YET_VALID:
            return f"the certificate of the pool at {address} is not valid yet (check the clocks)"
        if exc.verify_code in HOSTNAME_MISMATCH:
            return f"the certificate of the pool at {address} does not name {name}"
        if exc.verify_code in UNKNOWN_ISSUER:
            return f"the certificate of the pool at {address} is not signed by the trusted CA ({security.ca_source})"
        return f"the certificate of the pool at {address} is refused: {exc.verify_message}"
    except ssl.SSLError as exc:
        reason = (exc.reason or "").upper()
        if "CERTIFICATE_REQUIRED" in reason or "BAD_CERTIFICATE" in reason or "UNKNOWN_CA" in reason:
            return _client_refused(address, security)
        if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH" in reason:
            return f"the pool at {address} does not speak TLS, and this side trusts a CA ({security.ca_source})"
        return f"TLS with the pool at {address} failed: {exc.reason or exc}"
    except (ConnectionResetError, BrokenPipeError):
        return None
    except OSError:
        return None
    return None
