"""Settings: one typed object built from defaults < a TOML file < environment variables < flags.

Every knob is declared once, as a field of `Settings` whose metadata says how to parse it, which
environment variables set it and what it means. `load_settings` records where each value came from, so
`config show` can tell, and a bad value fails with one line that names the key, its source and what is
allowed (exit code 2), never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from hivemind_tui.core.errors import ConfigError

APP_NAME = "hivemind-tui"
ENV_PREFIX = "HIVEMIND_"
MIB = 1024 * 1024


class BadValue(ValueError):
    """Raised by a parser; the text says what is allowed."""


Parser = Callable[[Any], Any]


def _number(kind: type, minimum: float | None, maximum: float | None, unit: str) -> Parser:
    def parse(raw: Any) -> Any:
        if isinstance(raw, bool):
            raise BadValue(f"expected {_describe(kind, minimum, maximum, unit)}")
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            raise BadValue(f"expected {_describe(kind, minimum, maximum, unit)}") from None
        if kind is int and isinstance(raw, float) and raw != int(raw):
            raise BadValue(f"expected {_describe(kind, minimum, maximum, unit)}")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise BadValue(f"expected {_describe(kind, minimum, maximum, unit)}")
        return value

    return parse


def _describe(kind: type, minimum: float | None, maximum: float | None, unit: str) -> str:
    what = "a whole number" if kind is int else "a number"
    if minimum is not None and maximum is not None:
        what += f" from {minimum:g} to {maximum:g}"
    elif minimum is not None:
        what += f" of at least {minimum:g}"
    return f"{what} ({unit})" if unit else what


def _positive_seconds(raw: Any) -> float:
    try:
        value = _number(float, None, None, "seconds")(raw)
    except BadValue:
        value = 0.0
    if not 0 < value < float("inf"):
        raise BadValue("expected a number of seconds greater than 0")
    return float(value)


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise BadValue("expected true or false (1/0, yes/no, on/off)")


def _text(raw: Any) -> str:
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise BadValue("expected a string")
    return str(raw)


def _choice(*allowed: str) -> Parser:
    def parse(raw: Any) -> str:
        text = _text(raw).strip().lower()
        if text not in allowed:
            raise BadValue("expected one of " + ", ".join(allowed))
        return text

    return parse


def _address(allow_empty: bool) -> Parser:
    def parse(raw: Any) -> str:
        text = _text(raw).strip()
        if not text and allow_empty:
            return ""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadValue("expected HOST:PORT with a port from 1 to 65535" + (", or empty" if allow_empty else ""))
        return text

    return parse


def _network(version: int, allow_empty: bool) -> Parser:
    def parse(raw: Any) -> str:
        text = _text(raw).strip()
        if not text and allow_empty:
            return ""
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise BadValue(
                f"expected an IPv{version} network in CIDR form, such as "
                + ("10.0.0.0/24" if version == 4 else "fd00:6869:7665::/64")
            ) from None
        if net.version != version or net.num_addresses < 4:
            raise BadValue(f"expected an IPv{version} network with room for at least 2 peers")
        return str(net)

    return parse


def _interface(raw: Any) -> str:
    text = _text(raw).strip()
    if not 1 <= len(text) <= 15 or not all(c.isalnum() or c in "_=+.-" for c in text):
        raise BadValue("expected an interface name of 1 to 15 letters, digits or _=+.-")
    return text


def _sqlite_url(raw: Any) -> str:
    text = _text(raw).strip()
    if not text:
        return ""
    if not text.startswith("sqlite:///") or len(text) <= len("sqlite:///"):
        raise BadValue("expected sqlite:///PATH")
    return text


def knob(default: Any, parse: Parser, help: str, env: tuple[str, ...] = (), secret: bool = False) -> Any:
    """Declare a setting: its default, its parser, its meaning and any seed-era environment names."""
    return field(default=default, metadata={"parse": parse, "help": help, "env": env, "secret": secret})


def default_data_dir() -> str:
    return platformdirs.user_data_dir(APP_NAME, appauthor=False)


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class Settings:
    """Every knob of hivemind-tui. Tests build one with `replace()` instead of touching the environment."""

    pool_address: str = knob(
        "", _address(True), "Node Pool address HOST:PORT; empty: the embedded pool", env=("NODE_POOL_ADDRESS",)
    )
    tls_ca: str = knob(
        "",
        _text,
        "CA certificate (PEM) that signs the pool's certificate; empty: DATA_DIR/tls/ca.pem for this data dir's "
        "own TLS pool, else plaintext",
    )
    tls_cert: str = knob("", _text, "certificate (PEM) the embedded pool serves; empty: DATA_DIR/tls/pool.pem if any")
    tls_key: str = knob("", _text, "private key (PEM) of tls_cert; empty: DATA_DIR/tls/pool-key.pem", secret=True)
    tls_client_auth: bool = knob(
        False, _boolean, "mutual TLS: the pool accepts only clients with a certificate of its CA"
    )
    tls_client_cert: str = knob(
        "", _text, "certificate (PEM) this side shows a mutual-TLS pool; empty: DATA_DIR/tls/client.pem if any"
    )
    tls_client_key: str = knob("", _text, "private key (PEM) of tls_client_cert", secret=True)
    data_dir: str = knob(
        "",
        _text,
        "where stores, tokens, logs, VPN keys and the embedded pool live (empty: the platform's user data dir)",
    )
    database_url: str = knob(
        "", _sqlite_url, "sqlite:///PATH of the console's store (empty: DATA_DIR/console.db)", env=("DATABASE_URL",)
    )
    upload_folder: str = knob(
        "",
        _text,
        "where the task picker starts and results are saved (empty: the current folder)",
        env=("UPLOAD_FOLDER",),
    )
    max_upload_bytes: int = knob(
        64 * MIB,
        _number(int, 1024, 2**31 - 1, "bytes"),
        "largest task zip; both sides' gRPC message limits follow it",
        env=("MAX_CONTENT_LENGTH",),
    )
    remote_pool_limit_bytes: int = knob(
        4 * MIB, _number(int, 1024, 2**31 - 1, "bytes"), "receive limit of a remote (HiveMind) pool"
    )
    refresh_interval: float = knob(5.0, _positive_seconds, "seconds between console refreshes")
    rpc_deadline: float = knob(10.0, _positive_seconds, "deadline of an ordinary rpc, seconds")
    transfer_deadline: float = knob(300.0, _positive_seconds, "deadline of an upload or download, seconds")
    upload_concurrency: int = knob(4, _number(int, 1, 64, ""), "subtask uploads in flight at once")
    pool_listen: str = knob("127.0.0.1:50051", _address(False), "where `pool serve` listens")
    local_workers: int = knob(1, _number(int, 0, 64, ""), "workers `pool serve` starts itself")
    heartbeat_interval: float = knob(5.0, _positive_seconds, "seconds between worker heartbeats")
    heartbeat_timeout: float = knob(30.0, _positive_seconds, "a worker silent this long is offline, seconds")
    task_time_limit: float = knob(3600.0, _positive_seconds, "a task running longer is killed, seconds")
    task_retry_limit: int = knob(2, _number(int, 0, 100, ""), "re-queues of a task whose worker was lost")
    task_uids: str = knob(
        "61000-61999", _text, "uids (and gids) lent one per running task when the worker is root, FIRST-LAST"
    )
    web_listen: str = knob("127.0.0.1:5000", _address(False), "where `serve` (the HTTP face) listens")
    metrics_token: str = knob("", _text, "bearer token /metrics requires; empty: none", secret=True)
    task_network: bool = knob(True, _boolean, "tasks may use the network; off: only loopback (needs bwrap)")
    task_bwrap: bool = knob(True, _boolean, "run tasks in bwrap namespaces where bwrap works; off: uid and limits only")
    task_python: str = knob(
        "",
        _text,
        "the interpreter tasks run with; empty: the system's python3, else the worker's own (the first that runs "
        "in the sandbox)",
    )
    db_busy_timeout: float = knob(
        30.0, _positive_seconds, "how long a write to console.db waits for another process's write, seconds"
    )
    token_ttl: float = knob(3600.0, _positive_seconds, "life of a login token, seconds")
    login_delay_base: float = knob(
        1.0, _number(float, 0, 60, "seconds"), "first delay after 5 failed logins; it doubles with each further failure"
    )
    password_hash_cost: str = knob(
        "interactive",
        _choice("min", "interactive", "moderate", "sensitive"),
        "argon2id cost of the embedded pool's password hashes",
    )
    new_user_balance: int = knob(1000, _number(int, 0, 2**62, "CPT"), "balance of a new pool user")
    retention_days: float = knob(
        30.0, _number(float, 0, 36500, "days"), "finished tasks, logs and results older than this are pruned"
    )
    max_unzipped_bytes: int = knob(
        4096 * MIB, _number(int, 1024, 2**62, "bytes"), "largest total uncompressed size of a zip that is read"
    )
    max_zip_ratio: int = knob(200, _number(int, 1, 100000, ""), "largest compression ratio of a zip member")
    max_subtasks: int = knob(10_000, _number(int, 1, 1_000_000, ""), "most subtasks one submit may make")
    shard_compression: str = knob(
        "stored",
        _choice("stored", "deflated"),
        "how shards are stored in subtask zips (stored is faster, deflated smaller)",
    )
    subtask_retry_limit: int = knob(3, _number(int, 0, 100, ""), "retries of one failed subtask by `tasks retry`")
    vpn_endpoint: str = knob("", _text, "public host or IP that clients dial", env=("VPN_SERVER_IP",))
    vpn_port: int = knob(51820, _number(int, 1, 65535, ""), "WireGuard listen port", env=("VPN_PORT",))
    vpn_interface: str = knob("wg0", _interface, "WireGuard interface name")
    vpn_address_pool: str = knob("10.0.0.0/24", _network(4, False), "IPv4 addresses given to peers")
    vpn_address_pool6: str = knob("", _network(6, True), "optional IPv6 ULA pool given to peers")
    vpn_dns: str = knob("", _text, "DNS servers written into client configs, comma separated")
    vpn_mtu: int = knob(1420, _number(int, 1280, 9000, "bytes"), "MTU written into configs")
    vpn_keepalive: int = knob(25, _number(int, 0, 65535, "seconds"), "PersistentKeepalive of client configs")
    alert_cpu_percent: float = knob(
        90.0, _number(float, 1, 100, "percent"), "a node above this CPU for alert_cpu_minutes raises an alert"
    )
    alert_cpu_minutes: float = knob(5.0, _number(float, 0.1, 1440, "minutes"), "how long CPU must stay high")
    alert_disk_percent: float = knob(
        90.0, _number(float, 1, 100, "percent"), "this host's data-dir disk above this raises an alert"
    )
    alert_hook: str = knob("", _text, "command run when an alert is raised or cleared (alert JSON on stdin)")
    extra_mounts: str = knob("", _text, "more mount points whose disk usage the dashboard shows, comma separated")
    readonly: bool = knob(False, _boolean, "change nothing: every session acts as a viewer")
    log_level: str = knob("info", _choice("debug", "info", "warning", "error"), "level of the log files")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir or default_data_dir()).expanduser()

    def mounts(self, data_root: Path) -> list[Path]:
        """Filesystems whose usage this host reports: the data dir's, then `extra_mounts`."""
        return [data_root, *(Path(m.strip()) for m in self.extra_mounts.split(",") if m.strip())]

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with some values replaced, parsed and checked like any other source."""
        meta = {f.name: f.metadata for f in fields(self)}
        parsed = {}
        for name, raw in values.items():
            try:
                parsed[name] = meta[name]["parse"](raw)
            except BadValue as exc:
                raise ConfigError(f"setting {name}: {raw!r} is not allowed; {exc}") from None
        return replace(self, **parsed)


@dataclass(frozen=True)
class LoadedSettings:
    """Settings plus where each value came from ("default", "file PATH: key", "env NAME", "flag --x")."""

    settings: Settings
    sources: dict[str, str]
    config_file: Path


FLAG_NAMES = {"pool_address": "--pool", "data_dir": "--data-dir", "readonly": "--readonly"}


def env_names(name: str) -> tuple[str, ...]:
    meta = next(f.metadata for f in fields(Settings) if f.name == name)
    return (ENV_PREFIX + name.upper(), *meta["env"])


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> LoadedSettings:
    """Build the settings from every source; raise ConfigError naming the first bad key."""
    env = os.environ if env is None else env
    flags = flags or {}
    explicit_file = config_file is not None or bool(env.get(ENV_PREFIX + "CONFIG"))
    path = config_file or Path(env.get(ENV_PREFIX + "CONFIG") or default_config_file())
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    known = {f.name: f for f in fields(Settings)}

    def take(name: str, raw: Any, source: str) -> None:
        try:
            values[name] = known[name].metadata["parse"](raw)
        except BadValue as exc:
            raise ConfigError(f"setting {name} from {source}: {str(raw)[:60]!r} is not allowed; {exc}") from None
        sources[name] = source

    for name, raw in _read_file(path, explicit_file).items():
        if name not in known:
            raise ConfigError(f"setting {name} from file {path}: unknown key; see `hivemind-tui config show`")
        take(name, raw, f"file {path}: {name}")
    for name in known:
        # Seed-era names first, so that our own HIVEMIND_* name wins when both are set.
        for var in reversed(env_names(name)):
            if var in env:
                take(name, env[var], f"env {var}")
    for name, raw in flags.items():
        if raw is not None:
            take(name, raw, f"flag {FLAG_NAMES.get(name, name)}")
    for name in known:
        sources.setdefault(name, "default")
    return LoadedSettings(Settings(**values), sources, path)


def _read_file(path: Path, must_exist: bool) -> dict[str, Any]:
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(f"config file {path}: not found") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror})") from None
    import tomllib  # only when there is a file: most starts have none, and the console paints sooner

    try:
        with fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot be read ({exc.strerror})") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(f"setting {key} from file {path}: tables are not used; write keys at the top level")
    return data


def describe_settings(loaded: LoadedSettings) -> list[dict[str, Any]]:
    """Each setting with its value (secrets redacted), source, environment names and meaning."""
    rows = []
    for f in fields(Settings):
        value = getattr(loaded.settings, f.name)
        if f.metadata["secret"] and value:
            value = "<redacted>"
        rows.append(
            {
                "key": f.name,
                "value": value,
                "source": loaded.sources[f.name],
                "env": list(env_names(f.name)),
                "default": f.default,
                "help": f.metadata["help"],
            }
        )
    return rows
