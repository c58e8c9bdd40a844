"""Allocator probe for soaks: where a process's memory sits, written from inside it (not for production).

On a PYTHONPATH with `HIVEMIND_ALLOC_PROBE=FILE` set, Python imports this at start, and a daemon thread writes
one JSON line to FILE every `HIVEMIND_ALLOC_PROBE_EVERY` seconds (default 30): RSS and RssAnon; pymalloc's
arenas (MiB reserved), the bytes of its live blocks, of free blocks in pools in use and of empty pools; and
glibc's main heap (`mallinfo2`: its size, in use, free) and its mmapped chunks. So a soak can tell live objects
from memory an allocator holds for reuse. pymalloc's figures come from `sys._debugmallocstats()`, which writes
to C's `stderr`: for that call C's `stderr` points to a scratch file, while the process's own fd 2 (where
Textual draws) is left alone. Used by `soak_console.py --allocators`.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

PYMALLOC = {
    "arenas": re.compile(rb"(\d+) arenas \* (\d+) bytes/arena"),
    "live": re.compile(rb"# bytes in allocated blocks\s*=\s*([\d,]+)"),
    "free_blocks": re.compile(rb"# bytes in available blocks\s*=\s*([\d,]+)"),
    "empty_pools": re.compile(rb"(\d+) unused pools \* (\d+) bytes"),
}


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _number(match: re.Match[bytes] | None, *groups: int) -> int:
    if match is None:
        return 0
    value = 1
    for group in groups:
        value *= int(match.group(group).replace(b",", b""))
    return value


def pymalloc_figures(libc: ctypes.CDLL) -> dict[str, int]:
    c_stderr = ctypes.c_void_p.in_dll(libc, "stderr")
    with tempfile.TemporaryFile() as scratch:
        stream = libc.fdopen(os.dup(scratch.fileno()), b"w")
        saved = c_stderr.value
        c_stderr.value = stream
        try:
            sys._debugmallocstats()
        finally:
            c_stderr.value = saved
            libc.fclose(stream)
        scratch.seek(0)
        text = scratch.read()
    return {
        "pymalloc_arenas": _number(PYMALLOC["arenas"].search(text), 1, 2),
        "pymalloc_live": _number(PYMALLOC["live"].search(text), 1),
        "pymalloc_free_blocks": _number(PYMALLOC["free_blocks"].search(text), 1),
        "pymalloc_empty_pools": _number(PYMALLOC["empty_pools"].search(text), 1, 2),
    }


def sample(libc: ctypes.CDLL, started: float) -> dict[str, float]:
    lines = Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    heap = libc.mallinfo2()
    return {
        "minute": round((time.monotonic() - started) / 60, 2),
        "rss": int(status["VmRSS"].split()[0]) * 1024,
        "anon": int(status["RssAnon"].split()[0]) * 1024,
        **pymalloc_figures(libc),
        "glibc_heap": heap.arena,
        "glibc_in_use": heap.uordblks,
        "glibc_free": heap.fordblks,
        "glibc_mmapped": heap.hblkhd,
    }


def probe(path: str, every: float) -> None:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.fdopen.restype = ctypes.c_void_p
    libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    started = time.monotonic()
    while True:
        line = json.dumps(sample(libc, started))
        with open(path, "a") as out:
            out.write(line + "\n")
        time.sleep(every)


if path := os.environ.get("HIVEMIND_ALLOC_PROBE"):
    every = float(os.environ.get("HIVEMIND_ALLOC_PROBE_EVERY", "30"))
    threading.Thread(target=probe, args=(path, every), name="alloc-probe", daemon=True).start()
