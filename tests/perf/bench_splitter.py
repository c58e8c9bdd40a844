"""Benchmark of the splitter against coreutils in the same run (prints figures; CI does not run it).

    python tests/perf/bench_splitter.py [--size-mb 512]

The whole real path: a zip with an N MiB line file deflated in, to 16 subtask zips, next to `unzip` of the
input followed by `split -n l/16`, with the splitter's peak RSS (goal: flat in the input size, < 100 MB).
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

from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.services.task_splitter import read_task, split_task


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
        root = Path(__file__).resolve().parents[2]
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
            subprocess.run(
                ["split", "-n", "l/16", str(unzip_dir / "data" / "input.csv"), str(unzip_dir / "x")], check=True
            )

        if shutil.which("unzip"):
            t_base = best(3, unzip_then_split)
            t_real = best(3, ours_real)
            rss_real = peak_rss_of(
                f"import sys; sys.path.insert(0, {str(root)!r}); from pathlib import Path; "
                "from hivemind_tui.services.task_splitter import read_task, split_task; "
                "from hivemind_tui.core.zipsafe import ZipLimits; l = ZipLimits(1 << 40, 1000); "
                f"p = Path({str(zip_path)!r}); split_task(p, Path({str(work / 'rss2')!r}), read_task(p, l), 16, "
                "None, 1 << 40, 'b', l)"
            )
            print(
                f"zip (deflated input) -> 16 subtask zips: ours {t_real:.3f} s, unzip + split {t_base:.3f} s, "
                f"ratio {t_real / t_base:.2f}; peak RSS {rss_real:.0f} MB"
            )
        else:
            print("unzip is not installed: the real-path comparison needs it (apt-get install unzip)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
