"""UserService of the embedded pool: login, tokens, refresh, expiry, logout, lockout, balances."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hivemind_tui.proto import nodepool_pb2 as pb
from tests.conftest import fast_settings
from tests.helpers import FakeClock, Pool, start_pool


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[Pool]:
    running = await start_pool(fast_settings(tmp_path / "data", token_ttl=600), FakeClock())
    yield running
    await running.close()


async def test_first_start_creates_admin_with_private_password_file(pool: Pool) -> None:
    path = pool.server.paths.admin_password
    assert path.stat().st_mode & 0o777 == 0o600
    reply = await pool.users.Login(pb.LoginRequest(username="admin", password=pool.admin_password))
    assert reply.success and reply.role == "admin" and reply.token
    assert reply.expires_at == pytest.approx(pool.clock.now + 600)


async def test_wrong_password_and_unknown_user_look_the_same(pool: Pool) -> None:
    wrong = await pool.users.Login(pb.LoginRequest(username="admin", password="nope"))
    unknown = await pool.users.Login(pb.LoginRequest(username="nobody-here", password="nope"))
    assert not wrong.success and not unknown.success
    assert wrong.message == unknown.message and wrong.message.startswith("INVALID_CREDENTIALS")


async def test_unknown_user_costs_the_same_time_as_a_wrong_password(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "d", password_hash_cost="interactive")
    pool = await start_pool(settings)
    try:

        async def timed(user: str) -> float:
            """CPU time of this process (the pool runs in it): what the hash costs, however loaded the
            machine is; wall-clock time under a busy CI failed the ratio now and then."""
            best = float("inf")
            for _ in range(3):
                start = time.process_time()
                await pool.users.Login(pb.LoginRequest(username=user, password="wrong"))
                best = min(best, time.process_time() - start)
            return best

        await timed("ghost")  # builds the dummy hash once
        known, unknown = await timed("admin"), await timed("ghost")
        assert 0.5 < unknown / known < 2.0, (known, unknown)
    finally:
        await pool.close()


async def failures_of(pool: Pool, username: str) -> int:
    """The pool's own count of failed logins in a row, read from its database."""
    row = await pool.server.storage.fetchone("SELECT failures FROM login_failures WHERE username = ?", (username,))
    return 0 if row is None else int(row["failures"])


async def test_lockout_delays_grow_after_five_failures(tmp_path: Path) -> None:
    pool = await start_pool(fast_settings(tmp_path / "d", login_delay_base=0.2))
    try:
        durations = []
        for _ in range(7):
            start = time.perf_counter()
            await pool.users.Login(pb.LoginRequest(username="admin", password="bad"))
            durations.append(time.perf_counter() - start)
        assert await failures_of(pool, "admin") == 7
        assert durations[5] >= 0.2 and durations[6] >= 0.4
        start = time.perf_counter()
        ok = await pool.users.Login(pb.LoginRequest(username="admin", password=pool.admin_password))
        assert ok.success and time.perf_counter() - start >= 0.8  # the 8th attempt still waits
        assert await failures_of(pool, "admin") == 0  # a success clears the failures, so no more delays
    finally:
        await pool.close()


async def test_token_expiry_refresh_and_logout(pool: Pool) -> None:
    token = await pool.add_user("alice")
    balance = await pool.users.GetBalance(pb.GetBalanceRequest(token=token))
    assert balance.success and balance.balance == 1000
    pool.clock.advance(500)
    refreshed = await pool.users.RefreshToken(pb.RefreshTokenRequest(old_token=token))
    assert refreshed.success and refreshed.new_token != token
    assert refreshed.expires_at == pytest.approx(pool.clock.now + 600)
    pool.clock.advance(200)
    expired = await pool.users.GetBalance(pb.GetBalanceRequest(token=token))
    assert not expired.success and expired.message == "TOKEN_EXPIRED"
    late = await pool.users.RefreshToken(pb.RefreshTokenRequest(old_token=token))
    assert not late.success and late.message == "TOKEN_EXPIRED"
    new = refreshed.new_token
    assert (await pool.users.GetBalance(pb.GetBalanceRequest(token=new))).success
    assert (await pool.users.Logout(pb.LogoutRequest(token=new))).success
    revoked = await pool.users.GetBalance(pb.GetBalanceRequest(token=new))
    assert not revoked.success and revoked.message == "INVALID_TOKEN"
    garbage = await pool.users.GetBalance(pb.GetBalanceRequest(token="not-a-token"))
    assert garbage.message == "INVALID_TOKEN"


async def test_role_change_and_disable_act_on_existing_tokens(pool: Pool) -> None:
    token = await pool.add_user("carol")
    parts = pool.server.parts
    await parts.accounts.set_disabled("carol", True)
    assert (await pool.users.GetBalance(pb.GetBalanceRequest(token=token))).message == "INVALID_TOKEN"
    login = await pool.users.Login(pb.LoginRequest(username="carol", password="pw-" + "x" * 8))
    assert not login.success and login.message.startswith("ACCOUNT_DISABLED")


async def test_transfer_rules(pool: Pool) -> None:
    alice = await pool.add_user("alice", balance=100)
    await pool.add_user("bob", balance=5)
    viewer = await pool.add_user("vic", role="viewer")

    async def transfer(token: str, to: str, amount: int) -> pb.TransferResponse:
        return await pool.users.Transfer(pb.TransferRequest(token=token, receiver_username=to, amount=amount))

    assert (await transfer(alice, "bob", 0)).message.startswith("INVALID_ARGUMENT")
    assert (await transfer(alice, "bob", -5)).message.startswith("INVALID_ARGUMENT")
    assert (await transfer(alice, "alice", 5)).message.startswith("INVALID_ARGUMENT")
    assert (await transfer(alice, "ghost", 5)).message.startswith("USER_NOT_FOUND")
    assert (await transfer(alice, "bob", 101)).message.startswith("INSUFFICIENT_FUNDS")
    assert (await transfer(viewer, "bob", 1)).message.startswith("PERMISSION_DENIED")
    assert (await transfer(alice, "bob", 60)).success

    async def balance(token: str, user: str = "") -> pb.GetBalanceResponse:
        return await pool.users.GetBalance(pb.GetBalanceRequest(token=token, username=user))

    assert (await balance(alice)).balance == 40
    assert (await balance(pool.tokens["bob"])).balance == 65
    assert (await balance(alice, "bob")).message.startswith("PERMISSION_DENIED")
    assert (await balance(await pool.admin_token(), "bob")).balance == 65
