"""Rules between layers: no Textual below ui/, the pool and the client never meet, core/ sits under all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hivemind_tui"


def imports_of(folder: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                prefix = "." * node.level
                found.append((path.name, prefix + node.module))
    return found


@pytest.mark.parametrize("folder", ["services", "nodepool"])
def test_no_textual_or_ui(folder: str) -> None:
    bad = [
        (f, m)
        for f, m in imports_of(folder)
        if m.split(".")[0] == "textual" or m.startswith("hivemind_tui.ui") or m.startswith("..ui")
    ]
    assert bad == []


def test_pool_and_services_do_not_import_each_other() -> None:
    assert [(f, m) for f, m in imports_of("nodepool") if "services" in m.split(".")] == []
    assert [(f, m) for f, m in imports_of("services") if "nodepool" in m.split(".")] == []


def test_core_imports_no_layer_above_it() -> None:
    """core/ is the shared base: it may use the generated proto, never services, the pool, the UI or the CLI."""
    above = (
        "hivemind_tui.services",
        "hivemind_tui.nodepool",
        "hivemind_tui.ui",
        "hivemind_tui.commands",
        "hivemind_tui.cli",
    )
    assert [(f, m) for f, m in imports_of("core") if m.startswith(above)] == []


def test_commands_do_not_import_the_cli_module() -> None:
    """cli.py imports the commands; they take Context, Result and CommandRegistry from commands/base.py."""
    assert [(f, m) for f, m in imports_of("commands") if m == "hivemind_tui.cli"] == []


def test_rule_sees_imports() -> None:
    """The scan itself works: it finds the store's aiosqlite-backed frame import."""
    assert ("store.py", "hivemind_tui.core.sqlite_db") in imports_of("services")
