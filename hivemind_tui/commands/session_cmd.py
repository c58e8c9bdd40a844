"""`login`, `logout`, `whoami`, `balance`, `transfer`: the user's side of the pool."""

from __future__ import annotations

import getpass
import sys

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.commands.common import connect, require_change
from hivemind_tui.core.errors import UsageError


def register(registry: CommandRegistry) -> None:
    login_cmd = registry.command("login", login, "log in to the pool and remember the session (0600 token file)")
    login_cmd.add_argument("--user", metavar="NAME", help="user name (asked when missing)")
    login_cmd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    registry.command("logout", logout, "revoke the session's token and forget it")
    registry.command("whoami", whoami, "the logged-in user and role")
    registry.command("balance", balance, "the user's CPT balance")
    transfer_cmd = registry.command("transfer", transfer, "send CPT to another user")
    transfer_cmd.add_argument("receiver", metavar="USER")
    transfer_cmd.add_argument("amount", type=int, metavar="AMOUNT")


def _credentials(ctx: Context) -> tuple[str, str]:
    user = ctx.args.user
    if ctx.args.password_stdin:
        if not user:
            raise UsageError("--password-stdin needs --user NAME")
        return user, sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password: pass --user NAME --password-stdin")
    user = user or input("user: ").strip()
    return user, getpass.getpass("password: ")


async def login(ctx: Context) -> Result:
    user, password = _credentials(ctx)
    if not user or not password:
        raise UsageError("a user name and a password are needed")
    async with connect(ctx, need_login=False) as conn:
        data = await conn.session.login(user, password, remember=True)
        await conn.audit.record(user, "login", conn.client.address)
    return Result(
        {"user": user, "role": data.role, "pool": conn.client.address, "expires_at": data.expires_at},
        f"logged in to {conn.client.address} as {user} ({data.role})",
    )


async def logout(ctx: Context) -> Result:
    async with connect(ctx, need_login=False, start=False) as conn:
        user = conn.session.username
        was = conn.session.logged_in
        revoked = await conn.session.logout()
        if was:
            await conn.audit.record(user, "logout", conn.client.address)
    text = f"logged out {user} from {conn.client.address}" if was else "no session to log out"
    if was and not revoked:
        text += "; this pool has no Logout, so the token stays valid until it expires"
    return Result({"logged_out": was, "user": user or None, "token_revoked": revoked}, text)


async def whoami(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        role = "viewer" if ctx.settings.readonly else conn.session.role
        data = conn.session.data
    return Result(
        {
            "user": conn.session.username,
            "role": role,
            "pool": conn.client.address,
            "expires_at": data.expires_at if data else None,
        },
        f"{conn.session.username} ({role}) on {conn.client.address}",
    )


async def balance(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        amount = await conn.session.call(conn.client.balance)
    return Result({"user": conn.session.username, "balance": amount}, f"{amount} CPT")


async def transfer(ctx: Context) -> Result:
    if ctx.args.amount <= 0:
        raise UsageError("AMOUNT must be a positive whole number")
    async with connect(ctx) as conn:
        require_change(ctx, conn, "transfer CPT")
        message = await conn.session.call(lambda token: conn.client.transfer(token, ctx.args.receiver, ctx.args.amount))
        await conn.audit.record(conn.user, "transfer", ctx.args.receiver, f"{ctx.args.amount} CPT")
    return Result(
        {"receiver": ctx.args.receiver, "amount": ctx.args.amount, "message": message},
        f"sent {ctx.args.amount} CPT to {ctx.args.receiver}",
    )
