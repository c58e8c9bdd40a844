"""Write one SVG per console screen into screenshots/, from the demo fixture source (fixed data and clock).

    python scripts/screenshots.py [--out screenshots]

Running it again gives the same files byte for byte.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ui.demo_shots import SHOTS, Shot  # noqa: E402 - after the path is set


async def capture(shot: Shot, out_dir: Path) -> Path:
    app = shot.make()
    async with app.run_test(size=shot.size) as pilot:
        await shot.before(pilot)
        svg = app.export_screenshot(title=f"hivemind-tui · {shot.name.replace('_', ' ')}")
    path = out_dir / f"{shot.name}.svg"
    path.write_text(svg)
    return path


async def main(out_dir: Path) -> None:
    for shot in SHOTS:
        print(await capture(shot, out_dir))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    out = parser.parse_args().out.resolve()
    os.chdir(ROOT)  # the upload screen browses tests/ui/demo_files
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(out))
