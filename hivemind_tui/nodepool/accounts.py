"""Users, password hashes, login lockout and tokens of the embedded pool.

Passwords are argon2id hashes (PyNaCl); an unknown user is checked against a dummy hash of the same cost,
so a login answers in the same time whether or not the user exists. Tokens are random and stored only as
their SHA-256, so a copy of pool.db holds no usable token. The role is read from the user at each call, so
`pool set-role` and `pool disable-user` act at once on tokens already issued.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass

import nacl.exceptions
import nacl.pwhash

from hivemind_tui.core.clock import Clock
from hivemind_tui.nodepool import codes
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.storage import PoolStorage

ROLES = ("viewer", "operator", "admin")
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
FREE_FAILURES = 5
MAX_DELAY = 30.0

_argon = nacl.pwhash.argon2id
COSTS = {
    "min": (_argon.OPSLIMIT_MIN, _argon.MEMLIMIT_MIN),
    "interactive": (_argon.OPSLIMIT_INTERACTIVE, _argon.MEMLIMIT_INTERACTIVE),
    "moderate": (_argon.OPSLIMIT_MODERATE, _argon.MEMLIMIT_MODERATE),
    "sensitive": (_argon.OPSLIMIT_SENSITIVE, _argon.MEMLIMIT_SENSITIVE),
}


@dataclass(frozen=True)
class Caller:
    """Who a token belongs to, as the pool knows them now."""

    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def may_change(self) -> bool:
        return self.role in ("operator", "admin")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    role: str
    expires_at: float


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()


def check_username(name: str) -> str:
    if not USERNAME_PATTERN.match(name):
        raise PoolRefusal(codes.INVALID_ARGUMENT, "user names are 1 to 64 ASCII letters, digits, '.', '-' or '_'")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise PoolRefusal(codes.INVALID_ARGUMENT, "role must be one of " + ", ".join(ROLES))
    return role


class Accounts:
    def __init__(self, storage: PoolStorage, clock: Clock, hash_cost: str, token_ttl: float, delay_base: float) -> None:
        self._storage = storage
        self._clock = clock
        self._ops, self._mem = COSTS[hash_cost]
        self._token_ttl = token_ttl
        self._delay_base = delay_base
        self._dummy_hash: bytes | None = None

    # -- passwords --------------------------------------------------------------------------------
    async def hash_password(self, password: str) -> str:
        hashed = await asyncio.to_thread(_argon.str, password.encode(), self._ops, self._mem)
        return hashed.decode("ascii")

    async def _verify(self, hashed: bytes, password: str) -> bool:
        def verify() -> bool:
            try:
                return _argon.verify(hashed, password.encode())
            except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError):
                return False

        return await asyncio.to_thread(verify)

    # -- users ------------------------------------------------------------------------------------
    async def create_user(self, username: str, password: str, role: str, balance: int) -> None:
        check_username(username)
        check_role(role)
        if not password:
            raise PoolRefusal(codes.INVALID_ARGUMENT, "the password must not be empty")
        hashed = await self.hash_password(password)
        async with self._storage.write() as conn:
            exists = await (await conn.execute("SELECT 1 FROM users WHERE username = ?", (username,))).fetchone()
            if exists:
                raise PoolRefusal(codes.INVALID_ARGUMENT, f"user {username} exists")
            await conn.execute(
                "INSERT INTO users (username, password_hash, role, balance, created_at) VALUES (?, ?, ?, ?, ?)",
                (username, hashed, role, balance, self._clock()),
            )

    async def set_password(self, username: str, password: str) -> None:
        if not password:
            raise PoolRefusal(codes.INVALID_ARGUMENT, "the password must not be empty")
        hashed = await self.hash_password(password)
        await self._update_user(username, "password_hash = ?", hashed)

    async def set_role(self, username: str, role: str) -> None:
        await self._update_user(username, "role = ?", check_role(role))

    async def set_disabled(self, username: str, disabled: bool) -> None:
        await self._update_user(username, "disabled = ?", int(disabled))

    async def _update_user(self, username: str, assignment: str, value: object) -> None:
        async with self._storage.write() as conn:
            cursor = await conn.execute(
                f"UPDATE users SET {assignment} WHERE username = ?",  # noqa: S608
                (value, username),
            )
            if cursor.rowcount == 0:
                raise PoolRefusal(codes.USER_NOT_FOUND, username)

    async def has_admin(self) -> bool:
        """Whether any user is an admin, or the user `admin` exists whatever its role now is."""
        found = "SELECT COUNT(*) FROM users WHERE role = 'admin' OR username = 'admin'"
        return bool(await self._storage.fetchvalue(found))

    # -- login and tokens -------------------------------------------------------------------------
    async def login(self, username: str, password: str) -> IssuedToken:
        failures = await self._failures(username)
        if failures >= FREE_FAILURES:
            await asyncio.sleep(min(MAX_DELAY, self._delay_base * 2 ** (failures - FREE_FAILURES)))
        row = await self._storage.fetchone("SELECT * FROM users WHERE username = ?", (username,))
        if row is None:
            await self._verify(await self._dummy(), password)
            ok = False
        else:
            ok = await self._verify(row["password_hash"].encode("ascii"), password)
        if row is None or not ok:
            await self._record_failure(username)
            raise PoolRefusal(codes.INVALID_CREDENTIALS, "wrong user name or password")
        await self._clear_failures(username)
        if row["disabled"]:
            raise PoolRefusal(codes.ACCOUNT_DISABLED, "this account is disabled")
        return await self._issue(username, row["role"])

    async def authenticate(self, token: str) -> Caller:
        row = await self._storage.fetchone(
            "SELECT t.expires_at, t.revoked, u.username, u.role, u.disabled FROM tokens t "
            "JOIN users u ON u.username = t.username WHERE t.token_hash = ?",
            (token_hash(token),),
        )
        if row is None or row["revoked"] or row["disabled"]:
            raise PoolRefusal(codes.INVALID_TOKEN)
        if row["expires_at"] <= self._clock():
            raise PoolRefusal(codes.TOKEN_EXPIRED)
        return Caller(row["username"], row["role"])

    async def refresh(self, old_token: str) -> IssuedToken:
        caller = await self.authenticate(old_token)
        return await self._issue(caller.username, caller.role)

    async def logout(self, token: str) -> None:
        async with self._storage.write() as conn:
            await conn.execute("UPDATE tokens SET revoked = 1 WHERE token_hash = ?", (token_hash(token),))

    async def revoke_all(self) -> None:
        async with self._storage.write() as conn:
            await conn.execute("UPDATE tokens SET revoked = 1")

    async def prune_tokens(self) -> int:
        async with self._storage.write() as conn:
            cursor = await conn.execute("DELETE FROM tokens WHERE expires_at < ?", (self._clock() - 86400,))
            return cursor.rowcount

    async def _issue(self, username: str, role: str) -> IssuedToken:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        expires_at = now + self._token_ttl
        async with self._storage.write() as conn:
            await conn.execute(
                "INSERT INTO tokens (token_hash, username, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash(token), username, now, expires_at),
            )
        return IssuedToken(token, role, expires_at)

    async def _dummy(self) -> bytes:
        if self._dummy_hash is None:
            self._dummy_hash = (await self.hash_password(secrets.token_urlsafe(16))).encode("ascii")
        return self._dummy_hash

    async def _failures(self, username: str) -> int:
        row = await self._storage.fetchone("SELECT failures FROM login_failures WHERE username = ?", (username,))
        return int(row["failures"]) if row else 0

    async def _record_failure(self, username: str) -> None:
        async with self._storage.write() as conn:
            await conn.execute(
                "INSERT INTO login_failures (username, failures, last_failure) VALUES (?, 1, ?) "
                "ON CONFLICT(username) DO UPDATE SET failures = failures + 1, last_failure = excluded.last_failure",
                (username[:64], self._clock()),
            )

    async def _clear_failures(self, username: str) -> None:
        async with self._storage.write() as conn:
            await conn.execute("DELETE FROM login_failures WHERE username = ?", (username,))
