"""The screenshot script runs, writes every screen, and gives the committed files byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.ui.demo_shots import SHOTS

ROOT = Path(__file__).resolve().parents[2]


def test_screenshot_script_writes_every_screen_reproducibly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshots.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    names = {s.name for s in SHOTS}
    assert names >= {
        "login",
        "dashboard",
        "upload_preview",
        "tasks",
        "task_details_logs",
        "node_monitor",
        "node_details",
        "vpn_peer_qr",
        "help",
    }
    for name in names:
        made = (tmp_path / f"{name}.svg").read_text()
        assert made.startswith("<svg") and "HiveMind" in made
        assert made == (ROOT / "screenshots" / f"{name}.svg").read_text(), f"screenshots/{name}.svg is stale"
