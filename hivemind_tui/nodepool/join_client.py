"""`worker --join TOKEN` on the worker's host: pin the pool's CA by the token's fingerprint, trade the join
secret for the worker secret and a certificate, keep them (0600) so later starts need no token.

Nothing is written until the pool has accepted the join: a refused, expired or tampered token leaves the
data dir as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from hivemind_tui.core import tls
from hivemind_tui.core.datadir import atomic_write, make_private_dir
from hivemind_tui.core.errors import HivemindError, NotAuthenticatedError, UnreachableError
from hivemind_tui.core.join_token import JoinToken
from hivemind_tui.core.logging_setup import register_secret
from hivemind_tui.core.tls_probe import PROBE_TIMEOUT, ChannelSecurity, diagnose, split_address
from hivemind_tui.nodepool.worker import pool_channel
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class CaMismatchError(UnreachableError):
    code = "CA_MISMATCH"


@dataclass(frozen=True)
class JoinState:
    """What a joined worker keeps in `DATA_DIR/worker/`."""

    root: Path

    @property
    def record(self) -> Path:
        return self.root / "join.json"

    @property
    def secret(self) -> Path:
        return self.root / "worker-secret"

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.root / "worker.pem"

    @property
    def key(self) -> Path:
        return self.root / "worker-key.pem"

    def joined(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def fetch_ca(address: str, sha256: str) -> bytes:
    """The CA certificate the pool shows after its own, if its fingerprint is `sha256`.

    The handshake is not verified (there is nothing to verify with yet); the fingerprint is the check.
    """
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), PROBE_TIMEOUT) as raw, context.wrap_socket(raw) as conn:
            # Public from Python 3.13 as SSLSocket.get_unverified_chain; the same object before that.
            chain = conn._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
            ders = [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in chain]  # type: ignore[attr-defined]
    except ssl.SSLError:
        raise UnreachableError(f"the pool at {address} does not speak TLS, but the token pins a CA") from None
    except OSError as exc:
        raise UnreachableError(f"the pool at {address} cannot be reached ({exc.strerror or exc})") from None
    for der in ders:
        if tls.der_fingerprint(der) == sha256:
            return tls.der_to_pem(der)
    raise CaMismatchError(f"the pool at {address} shows a CA whose fingerprint is not the token's: refusing to join")


async def join_pool(token: JoinToken, node_id: str, state: JoinState, deadline: float) -> str:
    """Join through the first of the token's addresses that answers; the address joined."""
    register_secret(token.secret)
    problems = []
    for address in token.addresses:
        try:
            return await _join_at(address, token, node_id, state, deadline)
        except (NotAuthenticatedError, CaMismatchError):
            raise
        except UnreachableError as exc:
            problems.append(exc.message)
    raise UnreachableError("; ".join(problems) or "the token names no address")


async def _join_at(address: str, token: JoinToken, node_id: str, state: JoinState, deadline: float) -> str:
    security = None
    if token.ca_sha256:
        ca_pem = await asyncio.to_thread(fetch_ca, address, token.ca_sha256)
        security = ChannelSecurity(ca_pem, "the join token's CA")
    key, key_pem = tls.new_key()
    request = pb.JoinWorkerRequest(
        token_id=token.token_id,
        join_secret=token.secret,
        node_id=node_id,
        csr_pem=tls.csr(key, node_id).decode(),
    )
    channel = pool_channel(address, security, [])
    try:
        reply = await pb_grpc.NodeManagerServiceStub(channel).JoinWorker(request, timeout=deadline)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise HivemindError(f"the pool at {address} does not take join tokens (a plain HiveMind pool?)") from None
        problem = await asyncio.to_thread(diagnose, address, security)
        raise UnreachableError(problem or f"the pool at {address} cannot be reached ({exc.code().name})") from None
    finally:
        await channel.close()
    if not reply.success:
        raise NotAuthenticatedError(f"the pool refused the join: {reply.message}")
    register_secret(reply.worker_secret)
    if token.ca_sha256 and not reply.certificate_pem:
        raise HivemindError("the pool took the token but issued no certificate (its CA is not from `tls init`)")
    if reply.pool_port:
        host = address.rpartition(":")[0]
        address = f"{host}:{reply.pool_port}"
    await asyncio.to_thread(_keep, state, address, token, node_id, reply, key_pem)
    log.info("joined the pool at %s as %s", address, node_id)
    return address


def _keep(
    state: JoinState, address: str, token: JoinToken, node_id: str, reply: pb.JoinWorkerResponse, key_pem: bytes
) -> None:
    make_private_dir(state.root)
    atomic_write(state.secret, reply.worker_secret.encode(), mode=0o600)
    if reply.certificate_pem:
        atomic_write(state.key, key_pem, mode=0o600)
        atomic_write(state.cert, reply.certificate_pem.encode(), mode=0o600)
        atomic_write(state.ca, reply.ca_pem.encode(), mode=0o600)
    record = {
        "pool": address,
        "addresses": list(token.addresses),
        "ca_sha256": token.ca_sha256,
        "token_id": token.token_id,
        "node_id": node_id,
        "tls": bool(reply.certificate_pem),
        "joined_at": time.time(),
    }
    atomic_write(state.record, json.dumps(record, indent=1).encode(), mode=0o600)
