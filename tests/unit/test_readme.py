"""The README stays true: its first commands are the ones CI runs, and every setting is documented."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from hivemind_tui.core.config import Settings, env_names

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_and_env_name_is_in_the_readme() -> None:
    text = (ROOT / "README.md").read_text()
    for f in fields(Settings):
        assert f"| `{f.name}` |" in text, f.name
        for name in env_names(f.name):
            assert f"`{name}`" in text, name


def test_readme_starts_with_the_two_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].startswith("pip install -e . && hivemind-tui")
    assert block[1].startswith("pip install -e '.[test]' && pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e .\n" in ci and "pip install -e '.[test]'\n" in ci and "\npytest\n" in ci
