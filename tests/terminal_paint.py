"""Paint terminal cells to a PNG the way terminals draw block elements: as exact rectangles, not font glyphs.

Rasterising Textual's SVG capture draws block characters from whatever font is installed, whose cells do
not match the capture's grid (sextants come from a fallback font, narrower than a cell), so a QR code
falls apart there while it reads on a real terminal. kitty, VTE, WezTerm, foot and Windows Terminal draw
the half blocks and sextants themselves, filling exact fractions of the cell; this does the same. Other
characters are left out (only their background is painted): a scanner ignores text.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from rich.color import Color
from rich.style import Style
from textual.app import App

CELL_WIDTH = 8
CELL_HEIGHT = 18

Cell = tuple[str, float, float]
"""A character and the luminance (0 black .. 1 white) of its foreground and background."""


def _lit_parts(char: str) -> list[tuple[int, int, int, int]] | None:
    """The foreground rectangles of a block character, as (x0, y0, x1, y1) in sixths of the cell's height
    and halves of its width; None for characters that are not blocks."""
    if char == " ":
        return []
    halves = {"█": [(0, 0, 2, 6)], "▀": [(0, 0, 2, 3)], "▄": [(0, 3, 2, 6)], "▌": [(0, 0, 1, 6)], "▐": [(1, 0, 2, 6)]}
    if char in halves:
        return halves[char]
    code = ord(char) - 0x1FB00
    if not 0 <= code < 60:
        return None
    bits = code + 1
    bits += bits >= 21
    bits += bits >= 42
    return [(i % 2, (i // 2) * 2, i % 2 + 1, (i // 2) * 2 + 2) for i in range(6) if bits & (1 << i)]


def luminance(color: Color | None, default: float) -> float:
    if color is None:
        return default
    red, green, blue = color.get_truecolor()
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def screen_cells(app: App[object]) -> list[list[Cell]]:
    """The app's screen as cells, from the same strips the terminal is sent."""
    rows: list[list[Cell]] = []
    for strip in app.screen._compositor.render_strips():
        row: list[Cell] = []
        for segment in strip:
            style = segment.style or Style()
            fore = luminance(style.color, 1.0)
            back = luminance(style.bgcolor, 0.0)
            if style.reverse:
                fore, back = back, fore
            row.extend((char, fore, back) for char in segment.text)
        rows.append(row)
    return rows


def text_cells(text: str, dark_on_light: bool = False) -> list[list[Cell]]:
    fore, back = (0.0, 1.0) if dark_on_light else (1.0, 0.0)
    return [[(char, fore, back) for char in line] for line in text.splitlines()]


def png(rows: Sequence[Sequence[Cell]], margin: int = 2) -> bytes:
    """A grayscale PNG of the cells, with `margin` cells of the first cell's background around them."""
    columns = max(len(row) for row in rows) + 2 * margin
    width, height = columns * CELL_WIDTH, (len(rows) + 2 * margin) * CELL_HEIGHT
    edge = rows[0][0][2] if rows and rows[0] else 0.0
    pixels = [bytearray([round(edge * 255)] * width) for _ in range(height)]
    for cy, row in enumerate(rows):
        for cx, (char, fore, back) in enumerate(row):
            left, top = (cx + margin) * CELL_WIDTH, (cy + margin) * CELL_HEIGHT
            for y in range(top, top + CELL_HEIGHT):
                pixels[y][left : left + CELL_WIDTH] = bytes([round(back * 255)] * CELL_WIDTH)
            for x0, y0, x1, y1 in _lit_parts(char) or []:
                xa, xb = left + x0 * CELL_WIDTH // 2, left + x1 * CELL_WIDTH // 2
                for y in range(top + y0 * CELL_HEIGHT // 6, top + y1 * CELL_HEIGHT // 6):
                    pixels[y][xa:xb] = bytes([round(fore * 255)] * (xb - xa))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(line) for line in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
