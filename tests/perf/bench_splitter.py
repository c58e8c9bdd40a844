"""Benchmark of the splitter against coreutils in the same run (prints figures; CI does not run it).

    python tests/perf/bench_splitter.py [--size-mb 512]

1. A plain N MiB line file into 16 shards: our splitter next to `split -n l/16`; the ratio and our peak RSS
   (goal: ratio <= 0.85, peak RSS < 100 MB at any size).
2. The whole real path: a zip with the input deflated in, to 16 subtask zips, next to `unzip` of the input
   followed by `split -n l/16`.
Each figure is the best of 3 runs; the page cache is warm for both sides alike.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hivemind_tui.services.task_splitter import read_task, split_lines_file, split_task
from hivemind_tui.zipsafe import ZipLimits


def make_input(path: Path, size: int) -> None:
    rng = random.Random(7)
    words = [f"{rng.random():.12f},{rng.randint(0, 10**9)},{'w' * rng.randint(5, 60)}\n" for _ in range(4096)]
    block = "".join(words).encode()
    with path.open("wb") as fh:
        written = 0
        while written < size:
            fh.write(block)
            written += len(block)


def best(runs: int, action) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_of(code: str) -> float:
    """Peak RSS (MB) of a child process running `code`, which measures only the splitter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-c", code], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512)
    size_mb = parser.parse_args().size_mb
    work = Path(tempfile.mkdtemp(prefix="bench-split-", dir=os.environ.get("BENCH_DIR")))
    try:
        src = work / "input.csv"
        make_input(src, size_mb * 1024 * 1024)
        ours_dir, split_dir = work / "ours", work / "split"

        def ours() -> None:
            shutil.rmtree(ours_dir, ignore_errors=True)
            split_lines_file(src, ours_dir, 16)

        def coreutils() -> None:
            shutil.rmtree(split_dir, ignore_errors=True)
            split_dir.mkdir()
            subprocess.run(["split", "-n", "l/16", str(src), str(split_dir / "x")], check=True)

        t_split = best(3, coreutils)
        t_ours = best(3, ours)
        root = Path(__file__).resolve().parents[2]
        rss = peak_rss_of(f"import sys; sys.path.insert(0, {str(root)!r}); from pathlib import Path; "
                          "from hivemind_tui.services.task_splitter import split_lines_file; "
                          f"split_lines_file(Path({str(src)!r}), Path({str(work / 'rss')!r}), 16)")
        print(f"{size_mb} MiB plain file -> 16 shards: ours {t_ours:.3f} s, split -n l/16 {t_split:.3f} s, "
              f"ratio {t_ours / t_split:.2f} (goal <= 0.85); peak RSS of our split {rss:.0f} MB (goal < 100 MB)")

        zip_path = work / "task.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("main.py", "print('hi')\n")
            zf.writestr("hivemind.toml", '[task]\ntype = "data_processing"\n[split]\ninput = "data/input.csv"\n')
            zf.write(src, "data/input.csv")
        limits = ZipLimits(1 << 40, 1000)
        manifest = read_task(zip_path, limits)
        real_dir, unzip_dir = work / "real", work / "unzip"

        def ours_real() -> None:
            shutil.rmtree(real_dir, ignore_errors=True)
            split_task(zip_path, real_dir, manifest, 16, None, 1 << 40, "bench", limits)

        def unzip_then_split() -> None:
            shutil.rmtree(unzip_dir, ignore_errors=True)
            unzip_dir.mkdir()
            subprocess.run(["unzip", "-q", str(zip_path), "data/input.csv", "-d", str(unzip_dir)], check=True)
            subprocess.run(["split", "-n", "l/16", str(unzip_dir / "data" / "input.csv"), str(unzip_dir / "x")],
                           check=True)

        if shutil.which("unzip"):
            t_base = best(3, unzip_then_split)
            t_real = best(3, ours_real)
            rss_real = peak_rss_of(
                f"import sys; sys.path.insert(0, {str(root)!r}); from pathlib import Path; "
                "from hivemind_tui.services.task_splitter import read_task, split_task; "
                "from hivemind_tui.zipsafe import ZipLimits; l = ZipLimits(1 << 40, 1000); "
                f"p = Path({str(zip_path)!r}); split_task(p, Path({str(work / 'rss2')!r}), read_task(p, l), 16, "
                "None, 1 << 40, 'b', l)")
            print(f"zip (deflated input) -> 16 subtask zips: ours {t_real:.3f} s, unzip + split {t_base:.3f} s, "
                  f"ratio {t_real / t_base:.2f}; peak RSS {rss_real:.0f} MB")
        else:
            print("unzip is not installed: the real-path comparison needs it (apt-get install unzip)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
