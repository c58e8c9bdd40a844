"""Settings: precedence of the sources, seed-era names, and one clear line for every bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hivemind_tui.core.config import Settings, load_settings
from hivemind_tui.core.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    loaded = load_settings(config_file=None, env={"HIVEMIND_CONFIG": ""}, flags={})
    s = loaded.settings
    assert s.refresh_interval == 5.0 and s.max_upload_bytes == 64 * 1024 * 1024
    assert s.remote_pool_limit_bytes == 4 * 1024 * 1024 and s.vpn_port == 51820
    assert s.vpn_interface == "wg0" and s.vpn_address_pool == "10.0.0.0/24" and s.vpn_mtu == 1420
    assert all(source == "default" for source in loaded.sources.values())


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('refresh_interval = 7\npool_address = "127.0.0.1:1111"\nvpn_port = 5000\n')
    loaded = load_settings(
        cfg,
        env={"HIVEMIND_POOL_ADDRESS": "127.0.0.1:2222", "VPN_PORT": "6000"},
        flags={"pool_address": "127.0.0.1:3333"},
    )
    s = loaded.settings
    assert s.refresh_interval == 7.0 and loaded.sources["refresh_interval"] == f"file {cfg}: refresh_interval"
    assert s.vpn_port == 6000 and loaded.sources["vpn_port"] == "env VPN_PORT"
    assert s.pool_address == "127.0.0.1:3333" and loaded.sources["pool_address"] == "flag --pool"


def test_seed_names_and_our_name_wins() -> None:
    env = {
        "NODE_POOL_ADDRESS": "10.1.1.1:50051",
        "MAX_CONTENT_LENGTH": "2048",
        "VPN_SERVER_IP": "vpn.example",
        "DATABASE_URL": "sqlite:////tmp/x.db",
        "UPLOAD_FOLDER": "/srv/up",
    }
    s = load_settings(None, env=env).settings
    assert (s.pool_address, s.max_upload_bytes, s.vpn_endpoint) == ("10.1.1.1:50051", 2048, "vpn.example")
    assert s.database_url == "sqlite:////tmp/x.db" and s.upload_folder == "/srv/up"
    both = load_settings(None, env={"NODE_POOL_ADDRESS": "a:1", "HIVEMIND_POOL_ADDRESS": "b:2"}).settings
    assert both.pool_address == "b:2"


@pytest.mark.parametrize(
    ("env", "key", "source"),
    [
        ({"HIVEMIND_REFRESH_INTERVAL": "abc"}, "refresh_interval", "env HIVEMIND_REFRESH_INTERVAL"),
        ({"HIVEMIND_REFRESH_INTERVAL": "-1"}, "refresh_interval", "env HIVEMIND_REFRESH_INTERVAL"),
        ({"HIVEMIND_REFRESH_INTERVAL": "nan"}, "refresh_interval", "env HIVEMIND_REFRESH_INTERVAL"),
        ({"VPN_PORT": "70000"}, "vpn_port", "env VPN_PORT"),
        ({"HIVEMIND_VPN_ADDRESS_POOL": "10.0.0.1/24"}, "vpn_address_pool", "env HIVEMIND_VPN_ADDRESS_POOL"),
        ({"HIVEMIND_VPN_INTERFACE": "a-much-too-long-name"}, "vpn_interface", "env HIVEMIND_VPN_INTERFACE"),
        ({"HIVEMIND_READONLY": "maybe"}, "readonly", "env HIVEMIND_READONLY"),
        ({"NODE_POOL_ADDRESS": "no-port"}, "pool_address", "env NODE_POOL_ADDRESS"),
        ({"DATABASE_URL": "postgres://x"}, "database_url", "env DATABASE_URL"),
        ({"HIVEMIND_PASSWORD_HASH_COST": "huge"}, "password_hash_cost", "env HIVEMIND_PASSWORD_HASH_COST"),
    ],
)
def test_bad_env_value_names_key_and_source(env: dict[str, str], key: str, source: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env=env)
    text = str(err.value)
    assert key in text and source in text and "expected" in text and "\n" not in text


def test_bad_file_values(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("vpn_mtu = 12\n")
    with pytest.raises(ConfigError, match=r"vpn_mtu from file .*c.toml: vpn_mtu.*from 1280 to 9000"):
        load_settings(cfg, env={})
    cfg.write_text("nonsense_key = 1\n")
    with pytest.raises(ConfigError, match="nonsense_key.*unknown key"):
        load_settings(cfg, env={})
    cfg.write_text("refresh_interval = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_bad_flag_value() -> None:
    with pytest.raises(ConfigError, match="pool_address from flag --pool"):
        load_settings(None, env={}, flags={"pool_address": "nohost"})


def test_with_overrides_parses() -> None:
    s = Settings().with_overrides(refresh_interval="2.5")
    assert s.refresh_interval == 2.5
    with pytest.raises(ConfigError):
        Settings().with_overrides(vpn_port=0)


def test_cli_bad_env_is_one_line_exit_2(tmp_path: Path) -> None:
    env = {"HIVEMIND_REFRESH_INTERVAL": "abc", "HIVEMIND_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "hivemind_tui", "config", "show"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refresh_interval" in lines[0] and "HIVEMIND_REFRESH_INTERVAL" in lines[0]
    assert "Traceback" not in proc.stderr
