"""Join tokens on the pool's side, and JoinWorker: a token's secret traded for the worker secret and a
certificate signed for the worker's own key.

A token works for any number of workers until it expires or is revoked (a fleet joins with one token, as
with k3s); each join is counted. Secrets are compared by their SHA-256, in constant time, and never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from hivemind_tui.core import tls
from hivemind_tui.core.clock import Clock
from hivemind_tui.core.errors import ConfigError
from hivemind_tui.core.tls_names import TlsPaths, worker_name
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.storage import PoolStorage

log = logging.getLogger(__name__)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRow:
    token_id: str
    created_at: float
    expires_at: float
    revoked_at: float | None
    joins: int


@dataclass(frozen=True)
class Joined:
    worker_secret: str
    certificate_pem: str
    ca_pem: str
    pool_port: int


class JoinTokens:
    def __init__(self, storage: PoolStorage, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock

    async def create(self, ttl: float) -> tuple[str, str]:
        """A new token: (id, secret)."""
        token_id, secret = secrets.token_hex(4), secrets.token_urlsafe(24)
        now = self._clock()
        async with self._storage.write() as conn:
            await conn.execute(
                "INSERT INTO join_tokens (token_id, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_id, _hash(secret), now, now + ttl),
            )
        return token_id, secret

    async def revoke(self, token_id: str | None) -> int:
        """Revoke one token, or every live one (None); how many were revoked."""
        query = "UPDATE join_tokens SET revoked_at = ? WHERE revoked_at IS NULL"
        params: tuple[object, ...] = (self._clock(),)
        if token_id is not None:
            query += " AND token_id = ?"
            params += (token_id,)
        async with self._storage.write() as conn:
            return (await conn.execute(query, params)).rowcount

    async def listed(self) -> list[TokenRow]:
        rows = await self._storage.fetchall(
            "SELECT token_id, created_at, expires_at, revoked_at, joins FROM join_tokens ORDER BY created_at"
        )
        return [TokenRow(r["token_id"], r["created_at"], r["expires_at"], r["revoked_at"], r["joins"]) for r in rows]

    async def use(self, token_id: str, secret: str) -> None:
        """Count a join with the token, or refuse it with the reason (the same words for a wrong id and a
        wrong secret, so that a guesser learns nothing)."""
        row = await self._storage.fetchone(
            "SELECT secret_hash, expires_at, revoked_at FROM join_tokens WHERE token_id = ?", (token_id,)
        )
        if row is None or not hmac.compare_digest(row["secret_hash"], _hash(secret)):
            raise PoolRefusal("JOIN_REFUSED", "unknown join token")
        if row["revoked_at"] is not None:
            raise PoolRefusal("JOIN_REFUSED", "the join token was revoked")
        if row["expires_at"] <= self._clock():
            raise PoolRefusal("JOIN_REFUSED", "the join token has expired")
        async with self._storage.write() as conn:
            await conn.execute("UPDATE join_tokens SET joins = joins + 1 WHERE token_id = ?", (token_id,))


class JoinDesk:
    """Answers JoinWorker: checks the token, signs the worker's CSR with the pool's CA (when it has one)."""

    def __init__(self, tokens: JoinTokens, worker_secret: str, tls_dir: Path | None) -> None:
        self._tokens = tokens
        self._secret = worker_secret
        self._tls = TlsPaths(tls_dir) if tls_dir is not None else None
        # Set once the pool listens: joined workers are sent there from the join desk.
        self.pool_port = 0

    async def join(self, token_id: str, secret: str, node_id: str, csr_pem: str) -> Joined:
        if not node_id or len(node_id) > 200 or any(not c.isprintable() for c in node_id):
            raise PoolRefusal("INVALID_ARGUMENT", "a node id of printable characters is needed")
        await self._tokens.use(token_id, secret)
        certificate = ca = ""
        if self._tls is not None and self._tls.ca_key.exists():
            try:
                public_key = tls.csr_public_key(csr_pem.encode())
            except ConfigError as exc:
                raise PoolRefusal("INVALID_ARGUMENT", exc.message) from None
            ca_pem, signed = await asyncio.to_thread(self._sign, public_key, node_id)
            certificate, ca = signed.decode(), ca_pem.decode()
        log.info("worker %s joined with token %s", node_id, token_id)
        return Joined(self._secret, certificate, ca, self.pool_port)

    def _sign(self, public_key: ec.EllipticCurvePublicKey, node_id: str) -> tuple[bytes, bytes]:
        assert self._tls is not None
        ca_pem = self._tls.ca.read_bytes()
        return ca_pem, tls.sign(ca_pem, self._tls.ca_key.read_bytes(), public_key, node_id, [worker_name(node_id)])
