"""QR drawings decode: painted as a terminal paints block elements, then read by zbarimg (zbar-tools)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hivemind_tui.core import qr
from tests.system import require_tools
from tests.terminal_paint import png, text_cells

# The size of a real full-tunnel config with a preshared key, DNS and keepalive (the keys are throwaway).
CONFIG = """[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
Address = 10.77.0.2/32
DNS = 10.77.0.1

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
PresharedKey = FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=
Endpoint = vpn.example.org:51820
AllowedIPs = 0.0.0.0/0, ::/0
PersistentKeepalive = 25
"""


def decode(image: bytes, tmp_path: Path) -> str:
    require_tools("zbarimg")
    path = tmp_path / "shot.png"
    path.write_bytes(image)
    done = subprocess.run(["zbarimg", "-q", "--raw", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"zbarimg found no code (exit {done.returncode}): {done.stderr}"
    return done.stdout.removesuffix("\n")


@pytest.mark.parametrize("draw", [qr.half_blocks, qr.sextants], ids=["half-blocks", "sextants"])
@pytest.mark.parametrize("dark", [False, True], ids=["light-on-dark", "dark-on-light"])
def test_each_drawing_decodes(draw: qr.Drawer, dark: bool, tmp_path: Path) -> None:
    drawing = draw(CONFIG, dark)
    lines = drawing.text.splitlines()
    assert len(lines) == drawing.rows and {len(line) for line in lines} == {drawing.columns}
    assert decode(png(text_cells(drawing.text, dark_on_light=dark)), tmp_path) == CONFIG


def test_sextants_fit_a_config_where_half_blocks_do_not() -> None:
    halves, sixths = qr.half_blocks(CONFIG), qr.sextants(CONFIG)
    assert halves.rows > 29 >= sixths.rows, (halves.rows, sixths.rows)
    assert qr.fitting(CONFIG, 100, 29) == sixths
    assert qr.fitting(CONFIG, 100, halves.rows) == halves
    assert qr.fitting(CONFIG, sixths.columns - 1, 29) is None


def test_every_sextant_is_its_own_character() -> None:
    chars = {qr._sextant(bits) for bits in range(64)}
    assert len(chars) == 64
