"""Count a running console's (or pool's) Python objects by type, from outside, without restarting it.

    python scripts/object_census.py PID [--top 40] [--since EARLIER.json] [--collect] [--out census.json]

Attaches with gdb (Debian `gdb`; root, or the process's own user where ptrace allows it), runs a few lines in
the process under its GIL, and writes the census as JSON: the number of objects the cyclic collector tracks,
by type, plus `sys.getallocatedblocks()`, pymalloc's own figures (`sys._debugmallocstats()`: arenas of
1 MiB held, bytes in live blocks) and the C library's (glibc `mallinfo2`: heap, in use, free). With
`--since`, prints what grew since an earlier census of the same process. A soak whose RSS grows while the
census stays flat points at memory outside Python's objects; arenas that grow while the live bytes do not
point at fragmentation (pymalloc gives an arena back only once every object in it is gone). The census counts
cyclic garbage not yet collected too; `--collect` runs a full collection first (which frees it: the process
is no longer the one that was measured).

The lines run in a dictionary of their own, and hold nothing when they return: code run in the process's
`__main__` would keep its list of every object alive there if it failed half-way, and that list is then
the very growth the census is looking for.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = """
import gc, json, os, sys, tempfile
def _pymalloc():
    # _debugmallocstats writes to the C stderr: for its length, fd 2 is a file of ours.
    with tempfile.TemporaryFile("w+") as stats:
        saved = os.dup(2)
        try:
            os.dup2(stats.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        stats.seek(0)
        figures = {}
        for line in stats:
            name, sep, value = line.partition("=")
            if sep and name.startswith("# "):
                figures[name[2:].strip()] = int(value.strip().replace(",", ""))
        return figures
def _glibc():
    # mallinfo2 (glibc 2.33+): what the C library holds for the heap, in use and free in it.
    import ctypes
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in names]
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return {}
    mallinfo2.restype = Info
    info = mallinfo2()
    return {"heap": info.arena, "mapped": info.hblkhd, "in use": info.uordblks, "free": info.fordblks}
def _census(path):
    counts = {}
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    with open(path, "w") as out:
        figures = {"blocks": sys.getallocatedblocks(), "pymalloc": _pymalloc(), "glibc": _glibc()}
        json.dump({**figures, "types": counts}, out)
try:
    if COLLECT:
        gc.collect()
    _census(PATH)
except BaseException as exc:
    with open(PATH, "w") as out:
        json.dump({"error": repr(exc)}, out)
"""


def take(pid: int, path: Path, collect: bool) -> dict[str, object]:
    probe = Path(tempfile.mkdtemp(prefix="census-")) / "probe.py"
    probe.write_text(PROBE.replace("PATH", repr(str(path))).replace("COLLECT", repr(collect)))
    run_it = f'exec(open("{probe}").read(), {{}})'.replace('"', '\\"')
    subprocess.run(
        [
            "gdb",
            "-p",
            str(pid),
            "-batch",
            "-ex",
            "call (int)PyGILState_Ensure()",
            "-ex",
            f'call (int)PyRun_SimpleString("{run_it}")',
            "-ex",
            "call (void)PyGILState_Release($1)",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    census: dict[str, object] = json.loads(path.read_text())
    if "error" in census:
        sys.exit(f"the probe failed in process {pid}: {census['error']}")
    return census


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--since", type=Path, help="an earlier census of the same process: print what grew")
    parser.add_argument(
        "--collect", action="store_true", help="a full collection first: count live objects, not garbage too"
    )
    parser.add_argument("--out", type=Path, help="where to keep this census (default: census-PID-TIME.json)")
    args = parser.parse_args()
    out = args.out or Path(f"census-{args.pid}-{time.strftime('%H%M%S')}.json")
    census = take(args.pid, out.resolve(), args.collect)
    types: dict[str, int] = census["types"]  # type: ignore[assignment]
    print(f"{sum(types.values()):,} objects the collector tracks, {census['blocks']:,} allocated blocks; kept in {out}")
    pymalloc: dict[str, int] = census["pymalloc"]  # type: ignore[assignment]
    if "arenas allocated current" not in pymalloc:
        print("pymalloc: not in use (PYTHONMALLOC=malloc): every object is the C library's")
        pymalloc = {}
    else:
        print(
            f"pymalloc: {pymalloc['arenas allocated current']} arenas of 1 MiB held (at most "
            f"{pymalloc['arenas highwater mark']}, {pymalloc['arenas reclaimed']} given back), "
            f"{pymalloc['bytes in allocated blocks'] / 2**20:.1f} MiB in live blocks, "
            f"{pymalloc['bytes in available blocks'] / 2**20:.1f} MiB free in used pools"
        )
    glibc: dict[str, int] = census["glibc"]  # type: ignore[assignment]
    if glibc:
        print(
            f"glibc: {glibc['heap'] / 2**20:.1f} MiB of heap ({glibc['in use'] / 2**20:.1f} in use, "
            f"{glibc['free'] / 2**20:.1f} free), {glibc['mapped'] / 2**20:.1f} MiB in mapped blocks"
        )
    if args.since is None:
        for name, count in sorted(types.items(), key=lambda item: -item[1])[: args.top]:
            print(f"{count:9,d}  {name}")
        return
    earlier = json.loads(args.since.read_text())
    was_pymalloc = earlier.get("pymalloc", {})
    if was_pymalloc and pymalloc:
        print(
            f"since then: {pymalloc['arenas allocated current'] - was_pymalloc['arenas allocated current']:+d} arenas, "
            f"{(pymalloc['bytes in allocated blocks'] - was_pymalloc['bytes in allocated blocks']) / 2**20:+.1f} MiB "
            "in live blocks"
        )
    before: dict[str, int] = earlier["types"]
    grown = sorted(types.keys() | before.keys(), key=lambda name: before.get(name, 0) - types.get(name, 0))
    for name in grown[: args.top]:
        was, now = before.get(name, 0), types.get(name, 0)
        print(f"{now - was:+9,d}  {was:9,d} -> {now:9,d}  {name}")


if __name__ == "__main__":
    main()
