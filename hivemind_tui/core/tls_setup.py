"""Which certificates each side of each link uses, from the settings or, when they are empty, `DATA_DIR/tls/`.

After `tls init` a pool serves TLS with no setting changed, and the CLI, the console and the local workers
on the same data dir trust its CA by themselves. Settings name other files and always win.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from hivemind_tui.core.config import Settings
from hivemind_tui.core.errors import ConfigError
from hivemind_tui.core.poolfile import read_pool_info
from hivemind_tui.core.tls_names import CLIENT_NAME, TlsPaths
from hivemind_tui.core.tls_probe import ChannelSecurity


def tls_paths(settings: Settings) -> TlsPaths:
    return TlsPaths(settings.data_path / "tls")


def read_file(path: Path, what: str) -> bytes:
    """The file's bytes, or a setting error naming what it is and why it cannot be read."""
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def _setting_or(setting: str, default: Path) -> Path | None:
    if setting:
        return Path(setting).expanduser()
    return default if default.exists() else None


@dataclass(frozen=True)
class ServerTls:
    chain: bytes
    key: bytes
    ca: bytes | None
    client_auth: bool

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.chain)],
            root_certificates=self.ca if self.client_auth else None,
            require_client_auth=self.client_auth,
        )


def server_files(settings: Settings) -> tuple[Path, Path] | None:
    """The pool's certificate and key files (also the HTTP face's), or None when there are none."""
    paths = tls_paths(settings)
    cert = _setting_or(settings.tls_cert, paths.cert("pool"))
    key = _setting_or(settings.tls_key, paths.key("pool"))
    return None if cert is None or key is None else (cert, key)


def https_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTP face's TLS: the pool's certificate and key, TLS 1.2 or later; None without them."""
    files = server_files(settings)
    if files is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(*files)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the certificate {files[0]} with the key {files[1]}: {exc}") from None
    return context


def server_tls(settings: Settings) -> ServerTls | None:
    """The pool's certificate, with the CA after it so that a joining worker can read the CA off the handshake."""
    paths = tls_paths(settings)
    files = server_files(settings)
    if files is None:
        if settings.tls_client_auth:
            raise ConfigError("tls_client_auth needs TLS: run `hivemind-tui tls init` or set tls_cert and tls_key")
        return None
    ca_path = _setting_or(settings.tls_ca, paths.ca)
    ca = read_file(ca_path, "the CA certificate") if ca_path is not None else None
    if settings.tls_client_auth and ca is None:
        raise ConfigError("tls_client_auth needs the CA that signs client certificates: set tls_ca")
    cert, key = files
    chain = read_file(cert, "the pool certificate")
    if ca is not None and ca not in chain:
        chain = chain.rstrip(b"\n") + b"\n" + ca
    return ServerTls(chain, read_file(key, "the pool key"), ca, settings.tls_client_auth)


def _client_pair(settings: Settings, cert_name: str) -> tuple[bytes | None, bytes | None]:
    paths = tls_paths(settings)
    cert = _setting_or(settings.tls_client_cert, paths.cert(cert_name))
    key = _setting_or(settings.tls_client_key, paths.key(cert_name))
    if cert is None or key is None:
        return None, None
    return read_file(cert, "the client certificate"), read_file(key, "the client key")


def client_security(settings: Settings, address: str, cert_name: str = CLIENT_NAME) -> ChannelSecurity | None:
    """How to reach the pool at `address`: the tls_ca setting, or the data dir's CA when `address` is this
    data dir's own TLS pool; None is plaintext."""
    if settings.tls_ca:
        ca_path = Path(settings.tls_ca).expanduser()
    else:
        info = read_pool_info(settings.data_path / "pool")
        ca_path = tls_paths(settings).ca
        if info is None or not info.tls or info.address != address or not ca_path.exists():
            return None
    cert, key = _client_pair(settings, cert_name)
    return ChannelSecurity(read_file(ca_path, "the CA certificate"), str(ca_path), cert, key)


def channel_credentials(security: ChannelSecurity) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(security.ca, security.key, security.cert)


def secure_options(security: ChannelSecurity) -> list[tuple[str, str]]:
    if security.server_name:
        return [("grpc.ssl_target_name_override", security.server_name)]
    return []
