"""The data dir's layout (the README's "The data dir") and the file writes that must never be seen half-done.

The data dir holds tokens, keys and the pool's secrets, so every folder is 0700 and every secret 0600 from
the moment it exists (the mode is set on the temp file before any byte is written, never chmod-ed after).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hivemind_tui.core.config import Settings
from hivemind_tui.core.errors import ConfigError


@dataclass(frozen=True)
class DataDir:
    """Paths inside one data dir; `ensure()` creates the folders with 0700."""

    root: Path
    console_db_override: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DataDir:
        override = None
        if settings.database_url:
            override = Path(settings.database_url.removeprefix("sqlite:///")).expanduser()
        return cls(settings.data_path, override)

    @property
    def console_db(self) -> Path:
        return self.console_db_override or self.root / "console.db"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens"

    @property
    def vpn(self) -> Path:
        return self.root / "vpn"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pool(self) -> Path:
        return self.root / "pool"

    @property
    def exports(self) -> Path:
        """Where the console saves peer configs and results by default: private, never a git checkout."""
        return self.root / "exports"

    def vpn_server_address(self) -> str | None:
        """The WireGuard server's own address after `vpn init` (its IPv4 one), else None."""
        try:
            data = json.loads((self.vpn / "server.json").read_text())
        except (OSError, ValueError):
            return None
        address = str(data.get("address", "")).split("/")[0] if isinstance(data, dict) else ""
        return address or None

    def ensure(self, *subdirs: str) -> DataDir:
        """Create the root and the named subfolders (0700) if they are missing; a data dir that cannot be
        a folder (under /proc, below a file, a file itself, no permission) is a setting error."""
        for path in (self.root, *(self.root / s for s in subdirs)):
            try:
                make_private_dir(path)
            except OSError as exc:
                cause = exc.strerror or type(exc).__name__
                raise ConfigError(f"the data dir {self.root} cannot be used: {path}: {cause}") from None
        return self


def make_private_dir(path: Path) -> Path:
    """Create `path` and every missing folder above it with mode 0700; an existing folder keeps its mode.
    (`mkdir(parents=True)` would give the folders above the umask's mode, 0755.)"""
    if not path.is_dir():
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
        if not path.is_dir():  # it, or a folder above it, is a file
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    return path


def create_private_file(path: Path) -> Path:
    """Create (or empty) `path` with mode 0600 before anything writes into it, e.g. a zip a library opens."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part.

    The temp file lives beside the target (same filesystem, so rename is atomic), gets its mode at
    creation, is fsync-ed, renamed, and the folder fsync-ed so the rename survives a crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree_inside(path: Path | str, root: Path) -> bool:
    """Remove the folder `path` if it lies strictly inside `root`; whether it did.

    Paths in the stores are data: an empty one names the working directory, and a damaged or foreign row can
    name anything. Only what resolves below `root` (the data dir's staging folder) is ever removed."""
    if not str(path):
        return False
    target, base = Path(path).resolve(), root.resolve()
    if target == base or not target.is_relative_to(base):
        return False
    shutil.rmtree(target, ignore_errors=True)
    return True
