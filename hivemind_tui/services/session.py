"""A logged-in session: the token, its refresh before expiry, one refresh-and-retry, and its file.

`login --remember` (and the CLI's `login`) keep the session in `tokens/<pool>.json` (0600): the token, the
user, the role and the expiry, never the password. A token is refreshed when less than a tenth of its life
(at most 5 minutes) is left, and right after the pool answers again following an outage. When no valid
token is left, calls raise SessionExpiredError: the CLI exits 4, the console asks for the password again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.datadir import atomic_write, make_private_dir
from hivemind_tui.core.errors import NotSupportedError
from hivemind_tui.core.logging_setup import register_secret
from hivemind_tui.services.errors import SessionExpiredError, TokenExpiredError
from hivemind_tui.services.nodepool_client import PoolClient

log = logging.getLogger(__name__)

T = TypeVar("T")
# HiveMind's own master refreshes 50 minutes after login when the pool does not say when tokens expire.
DEFAULT_LIFE = 50 * 60
MAX_MARGIN = 300.0


@dataclass
class SessionData:
    pool: str
    username: str
    role: str
    token: str
    issued_at: float
    expires_at: float | None

    def __repr__(self) -> str:
        return f"SessionData(pool={self.pool!r}, username={self.username!r}, role={self.role!r})"

    @property
    def refresh_at(self) -> float:
        if self.expires_at is None:
            return self.issued_at + DEFAULT_LIFE
        life = self.expires_at - self.issued_at
        return self.expires_at - min(MAX_MARGIN, max(life, 0) / 10)


def token_file(tokens_dir: Path, pool_address: str) -> Path:
    return tokens_dir / (re.sub(r"[^A-Za-z0-9.-]", "_", pool_address) + ".json")


class Session:
    """`file` replaces the remembered login's file: the HTTP face hands each browser console its own."""

    def __init__(
        self, client: PoolClient, tokens_dir: Path, clock: Clock = system_clock, file: Path | None = None
    ) -> None:
        self.client = client
        self._tokens_dir = tokens_dir
        self._file = file
        self._clock = clock
        self.data: SessionData | None = None
        self._remember = False
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._file or token_file(self._tokens_dir, self.client.address)

    @property
    def username(self) -> str:
        return self.data.username if self.data else ""

    @property
    def role(self) -> str:
        return self.data.role if self.data else ""

    @property
    def logged_in(self) -> bool:
        return self.data is not None

    # -- persistence ------------------------------------------------------------------------------
    def load(self) -> bool:
        """Take a remembered session for this pool if it has not expired."""
        try:
            raw = json.loads(self.path.read_text())
            data = SessionData(**raw)
        except (OSError, ValueError, TypeError):
            return False
        if data.expires_at is not None and data.expires_at <= self._clock():
            return False
        register_secret(data.token)
        self.data = data
        self._remember = True
        return True

    def _save(self) -> None:
        if self._remember:
            self.write_to(self.path)

    def write_to(self, path: Path) -> None:
        """Keep the session in `path` (0600), which `Session(..., file=path).load()` takes up in another process."""
        if self.data is not None:
            make_private_dir(path.parent)
            atomic_write(path, json.dumps(asdict(self.data)).encode(), mode=0o600)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)

    # -- login, refresh, logout -------------------------------------------------------------------
    async def login(self, username: str, password: str, remember: bool = False) -> SessionData:
        register_secret(password)
        result = await self.client.login(username, password)
        register_secret(result.token)
        self.data = SessionData(
            self.client.address, username, result.role, result.token, self._clock(), result.expires_at
        )
        self._remember = remember
        await asyncio.to_thread(self._save)
        log.info("logged in to %s as %s (%s)", self.client.address, username, result.role)
        return self.data

    async def refresh(self, stale: str | None = None) -> None:
        """A new token for the session. With `stale`, only if the session still has that token: calls that
        found it due together (a console refresh makes several) wait here, and the first one renews it."""
        async with self._lock:
            data = self._require()
            if stale is not None and data.token != stale:
                return
            try:
                result = await self.client.refresh(data.token)
            except TokenExpiredError:
                self.data = None
                raise SessionExpiredError("the session expired; log in again") from None
            register_secret(result.token)
            self.data = SessionData(data.pool, data.username, data.role, result.token, self._clock(), result.expires_at)
            self.client.reconnected = False
            await asyncio.to_thread(self._save)
            log.info("token refreshed for %s", data.username)

    async def logout(self) -> bool:
        """Forget the session; True when the pool revoked its token (a pool without Logout, such as
        HiveMind, leaves it valid until it expires)."""
        revoked = False
        if self.data is not None:
            try:
                await self.client.logout(self.data.token)
                revoked = True
            except NotSupportedError:
                log.info("this pool has no Logout; the token expires by itself")
            except TokenExpiredError:
                revoked = True
        self.data = None
        await asyncio.to_thread(self.forget)
        return revoked

    async def token(self) -> str:
        """A token that is valid now: refreshed first when it is due or the pool just came back."""
        data = self._require()
        if self._clock() >= data.refresh_at or self.client.reconnected:
            await self.refresh(stale=data.token)
        return self._require().token

    async def call(self, rpc: Callable[[str], Awaitable[T]]) -> T:
        """Run `rpc(token)`; on TOKEN_EXPIRED or INVALID_TOKEN refresh once and retry once."""
        token = await self.token()
        try:
            return await rpc(token)
        except TokenExpiredError:
            await self.refresh(stale=token)
            return await rpc(self._require().token)

    def _require(self) -> SessionData:
        if self.data is None:
            raise SessionExpiredError("not logged in: run `hivemind-tui login`")
        return self.data
