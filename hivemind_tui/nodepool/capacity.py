"""What a worker offers: cores, memory and GPU from the machine, and a CPU score from a micro-benchmark.

The CPU score is the speed of one core at a fixed job (SHA-256 over 64 MiB in 1 MiB blocks), scaled so
that a core that takes 0.1 s scores 1000; higher is faster. It runs once and is cached in the data dir,
keyed by the CPU model and Python version, so a restart costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from hivemind_tui.core.datadir import atomic_write

BENCH_BLOCK = b"\x5a" * (1024 * 1024)
BENCH_BLOCKS = 64
REFERENCE_SECONDS = 0.1


@dataclass(frozen=True)
class GpuReading:
    name: str
    memory_gb: int
    usage: float
    memory_usage: float


def cpu_benchmark() -> int:
    """Best of three runs of the fixed job, as a score (see the module docstring)."""
    best = float("inf")
    for _ in range(3):
        digest = hashlib.sha256()
        start = time.perf_counter()
        for _ in range(BENCH_BLOCKS):
            digest.update(BENCH_BLOCK)
        best = min(best, time.perf_counter() - start)
    return max(1, round(1000 * REFERENCE_SECONDS / best))


def _cpu_key() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}|{platform.python_version()}"


def cached_cpu_score(cache: Path) -> int:
    key = _cpu_key()
    try:
        data = json.loads(cache.read_text())
        if data.get("key") == key and int(data["score"]) > 0:
            return int(data["score"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    score = cpu_benchmark()
    atomic_write(cache, json.dumps({"key": key, "score": score}).encode(), mode=0o600)
    return score


def read_gpu() -> GpuReading | None:
    """The first GPU from nvidia-smi, or None where there is none (psutil knows no GPUs)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        name, total, util, used = (part.strip() for part in out.splitlines()[0].split(","))
        total_mb = float(total)
        return GpuReading(name, round(total_mb / 1024), float(util), 100.0 * float(used) / max(total_mb, 1.0))
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None


def memory_gb() -> int:
    return max(1, round(psutil.virtual_memory().total / 1024**3))
