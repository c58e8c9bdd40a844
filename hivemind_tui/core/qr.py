"""QR codes drawn with Unicode block characters, so a phone can scan a WireGuard config off a terminal.

Two drawings: half blocks (two modules a character row, square modules on a 1:2 terminal cell) and
sextants (a 2x3 grid of modules a character, U+1FB00), which fit a config of about 400 bytes (a QR of 69
modules) into 24 rows, where half blocks would need 36. Terminals draw both block sets themselves, cell
exact, rather than from a font.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import segno

QUIET_ZONE = 2
"""Light modules around the code; scanners need some, the spec's 4 would not fit a 30-row terminal."""


@dataclass(frozen=True)
class QrDrawing:
    text: str
    columns: int
    rows: int


Drawer = Callable[[str, bool], QrDrawing]


def modules(data: str) -> list[list[bool]]:
    """The code's modules (True = dark), with the quiet zone; error level L keeps it as small as it gets."""
    matrix = segno.make(data, error="l", micro=False).matrix
    size = len(matrix) + 2 * QUIET_ZONE
    grid = [[False] * size for _ in range(size)]
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            grid[y + QUIET_ZONE][x + QUIET_ZONE] = bool(dark)
    return grid


def _padded(grid: list[list[bool]], width_step: int, height_step: int) -> list[list[bool]]:
    width = -(-len(grid[0]) // width_step) * width_step
    rows = [row + [False] * (width - len(row)) for row in grid]
    while len(rows) % height_step:
        rows.append([False] * width)
    return rows


# Light modules are the drawn ones, so the code reads on a dark terminal; screens that set their own colours
# (black on white) pass dark=True.
def half_blocks(data: str, dark: bool = False) -> QrDrawing:
    grid = _padded(modules(data), 1, 2)
    chars = {(False, False): " ", (False, True): "▄", (True, False): "▀", (True, True): "█"}
    lines = [
        "".join(chars[(grid[y][x] == dark, grid[y + 1][x] == dark)] for x in range(len(grid[0])))
        for y in range(0, len(grid), 2)
    ]
    return QrDrawing("\n".join(lines), len(grid[0]), len(lines))


def _sextant(bits: int) -> str:
    """The character whose lit cells are `bits` (bit 0 top left, bit 1 top right, ... bit 5 bottom right).

    U+1FB00 lists the 60 sextants that had no character before: it skips the empty cell, the left and
    right halves (U+258C, U+2590) and the full block.
    """
    special = {0: " ", 21: "▌", 42: "▐", 63: "█"}
    if bits in special:
        return special[bits]
    return chr(0x1FB00 + bits - 1 - (bits > 21) - (bits > 42))


def sextants(data: str, dark: bool = False) -> QrDrawing:
    grid = _padded(modules(data), 2, 3)
    lines = []
    for y in range(0, len(grid), 3):
        line = []
        for x in range(0, len(grid[0]), 2):
            bits = 0
            for dy in range(3):
                for dx in range(2):
                    if grid[y + dy][x + dx] == dark:
                        bits |= 1 << (dy * 2 + dx)
            line.append(_sextant(bits))
        lines.append("".join(line))
    return QrDrawing("\n".join(lines), len(grid[0]) // 2, len(lines))


def drawings(data: str, dark: bool = False) -> tuple[QrDrawing, QrDrawing]:
    """Both drawings, clearest first: square half blocks, then sextants."""
    return half_blocks(data, dark), sextants(data, dark)


def pick(choices: tuple[QrDrawing, ...], columns: int, rows: int) -> QrDrawing | None:
    """The first of `choices` that fits `columns` x `rows`."""
    return next((d for d in choices if d.columns <= columns and d.rows <= rows), None)


def fitting(data: str, columns: int, rows: int, dark: bool = False) -> QrDrawing | None:
    """The clearest drawing that fits `columns` x `rows`: square half blocks first, else sextants."""
    return pick(drawings(data, dark), columns, rows)


def image(data: str, kind: str) -> bytes:
    """The code as an .svg or .png file."""
    buffer = io.BytesIO()
    segno.make(data, error="l", micro=False).save(buffer, kind=kind, scale=6 if kind == "png" else 4)
    return buffer.getvalue()
