"""CPT balances: reading them and moving them between users, atomically and never below zero."""

from __future__ import annotations

from hivemind_tui.nodepool import codes
from hivemind_tui.nodepool.accounts import Caller
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.storage import PoolStorage


class Ledger:
    def __init__(self, storage: PoolStorage) -> None:
        self._storage = storage

    async def balance(self, caller: Caller, username: str) -> int:
        """A user reads their own balance; an admin reads anyone's."""
        username = username or caller.username
        if username != caller.username and not caller.is_admin:
            raise PoolRefusal(codes.PERMISSION_DENIED, "only admins read other users' balances")
        row = await self._storage.fetchone("SELECT balance FROM users WHERE username = ?", (username,))
        if row is None:
            raise PoolRefusal(codes.USER_NOT_FOUND, username[:64])
        return int(row["balance"])

    async def transfer(self, caller: Caller, receiver: str, amount: int) -> int:
        """Move `amount` CPT to `receiver`; returns the caller's new balance."""
        if not caller.may_change:
            raise PoolRefusal(codes.PERMISSION_DENIED, f"a {caller.role} may not transfer")
        if amount <= 0:
            raise PoolRefusal(codes.INVALID_ARGUMENT, "the amount must be a positive whole number")
        if receiver == caller.username:
            raise PoolRefusal(codes.INVALID_ARGUMENT, "you cannot transfer to yourself")
        async with self._storage.write() as conn:
            target = await (await conn.execute("SELECT disabled FROM users WHERE username = ?", (receiver,))).fetchone()
            if target is None or target["disabled"]:
                raise PoolRefusal(codes.USER_NOT_FOUND, receiver[:64])
            row = await (
                await conn.execute("SELECT balance FROM users WHERE username = ?", (caller.username,))
            ).fetchone()
            if row is None or row["balance"] < amount:
                raise PoolRefusal(codes.INSUFFICIENT_FUNDS, f"balance {row['balance'] if row else 0} < {amount}")
            await conn.execute("UPDATE users SET balance = balance - ? WHERE username = ?", (amount, caller.username))
            await conn.execute("UPDATE users SET balance = balance + ? WHERE username = ?", (amount, receiver))
            return int(row["balance"]) - amount
