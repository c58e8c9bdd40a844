"""Checking and unpacking zips that came from somebody else (tasks, subtask results).

Shared by the pool (uploads), the worker (unpacking a task) and the splitter (reading a task, aggregating
results), which may not import each other. Every zip is checked before use: no absolute paths, no `..`,
no links or device files, no encrypted members, a bounded total size and compression ratio. Unpacking
counts the real bytes, because the sizes a zip declares can lie.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_MEMBERS = 100_000
# Small members may compress very well for honest reasons (a file of zeros); the ratio rule starts here.
RATIO_FLOOR_BYTES = 1024 * 1024


class ZipRejected(ValueError):
    """The zip is unsafe or malformed; the text says why, without quoting its content."""


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int
    max_ratio: int


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why one member is unsafe to unpack, or None."""
    name = info.filename
    if "\\" in name or "\x00" in name:
        return f"member {name[:80]!r} has a backslash or NUL in its name"
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return f"member {name[:80]!r} has an absolute path"
    if ".." in path.parts:
        return f"member {name[:80]!r} leaves the folder ('..')"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return f"member {name[:80]!r} is a symbolic link"
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return f"member {name[:80]!r} is a device, pipe or socket"
    if info.flag_bits & 0x1:
        return f"member {name[:80]!r} is encrypted"
    return None


def check_zip(source: bytes | Path, limits: ZipLimits, require_main: bool = False) -> list[zipfile.ZipInfo]:
    """Check a whole zip without unpacking it; return its members or raise ZipRejected."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise ZipRejected("not a valid zip file") from None
    check_members(members, limits)
    if require_main and not any(m.filename == "main.py" for m in members):
        raise ZipRejected("no main.py at the root")
    return members


def check_members(members: Iterable[zipfile.ZipInfo], limits: ZipLimits) -> None:
    total = 0
    seen: set[str] = set()
    for count, info in enumerate(members, start=1):
        if count > MAX_MEMBERS:
            raise ZipRejected(f"more than {MAX_MEMBERS} members")
        problem = member_problem(info)
        if problem:
            raise ZipRejected(problem)
        if info.filename in seen:
            raise ZipRejected(f"member {info.filename[:80]!r} appears twice")
        seen.add(info.filename)
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ZipRejected(f"unpacks to more than {limits.max_total_bytes} bytes")
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ZipRejected(f"member {info.filename[:80]!r} compresses more than {limits.max_ratio}:1 (a zip bomb?)")


def extract_zip(source: bytes | Path, dest: Path, limits: ZipLimits) -> list[Path]:
    """Check and unpack into `dest`, counting real bytes; links and special files are never created."""
    check_zip(source, limits)
    dest = dest.resolve()
    written: list[Path] = []
    budget = limits.max_total_bytes
    with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if target != dest and dest not in target.parents:
                raise ZipRejected(f"member {info.filename[:80]!r} leaves the folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                declared = info.file_size
                copied = 0
                while chunk := src.read(1024 * 1024):
                    copied += len(chunk)
                    if copied > declared or copied > budget:
                        raise ZipRejected(f"member {info.filename[:80]!r} is larger than it says")
                    out.write(chunk)
                budget -= copied
            written.append(target)
    return written


def zip_folder(folder: Path, prefix: str) -> bytes:
    """Zip `folder` with every name under `prefix/` (result zips keep their `output/` prefix)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_symlink() or not (path.is_file() or path.is_dir()):
                    continue
                arcname = f"{prefix}/{path.relative_to(folder).as_posix()}"
                if path.is_dir():
                    zf.writestr(arcname + "/", b"")
                else:
                    zf.write(path, arcname)
        else:
            zf.writestr(f"{prefix}/", b"")
    return buffer.getvalue()
