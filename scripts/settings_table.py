"""Rewrite the settings table in README.md from `Settings` (run after adding a knob; a test checks it)."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hivemind_tui.core.config import MIB, Settings, env_names

START, END = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"


def render() -> str:
    rows = ["| key | environment | default | meaning |", "|---|---|---|---|"]
    for f in fields(Settings):
        default = f.default
        if isinstance(default, bool):
            shown = str(default).lower()
        elif isinstance(default, int) and default >= MIB and default % MIB == 0:
            shown = f"{default // MIB} MiB"
        elif default == "":
            shown = "(empty)"
        else:
            shown = str(default)
        names = ", ".join(f"`{e}`" for e in env_names(f.name))
        rows.append(f"| `{f.name}` | {names} | {shown} | {f.metadata['help']} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(head + START + render() + END + tail)


if __name__ == "__main__":
    main()
