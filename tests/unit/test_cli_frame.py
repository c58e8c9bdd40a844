"""The command-line frame: global options anywhere, --json rules, exit codes, the error object."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hivemind_tui import __version__
from hivemind_tui.cli import build_parser, parse, run, run_command
from hivemind_tui.commands import MODULES, WORDS
from hivemind_tui.commands.base import Result
from hivemind_tui.core.errors import UsageError


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "--version")[:2] == (0, f"hivemind-tui {__version__}\n")
    code, out, _ = run_cli(capsys, "--json", "--version")
    assert code == 0 and json.loads(out) == {"version": __version__}


@pytest.mark.parametrize("order", ["before", "after"])
def test_global_options_before_or_after(capsys: pytest.CaptureFixture[str], tmp_path: Path, order: str) -> None:
    opts = ["--json", "--data-dir", str(tmp_path / "d"), "--pool", "127.0.0.1:9999", "--readonly"]
    argv = [*opts, "config", "show"] if order == "before" else ["config", "show", *opts]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and err == ""
    doc = json.loads(out)
    settings = doc["settings"]
    assert settings["pool_address"] == {
        "value": "127.0.0.1:9999",
        "source": "flag --pool",
        "env": ["HIVEMIND_POOL_ADDRESS", "NODE_POOL_ADDRESS"],
    }
    assert settings["readonly"]["value"] is True
    assert doc["data_dir"] == str(tmp_path / "d")


def test_value_before_command_is_not_overwritten(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "--data-dir", str(tmp_path / "x"), "config", "show", "--json")
    assert code == 0 and json.loads(out)["data_dir"] == str(tmp_path / "x")


def test_secrets_are_redacted_in_config_show(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_TLS_KEY", "/etc/secret/key.pem")
    code, out, _ = run_cli(capsys, "--json", "--data-dir", str(tmp_path), "config", "show")
    assert code == 0 and json.loads(out)["settings"]["tls_key"]["value"] == "<redacted>"
    assert "key.pem" not in out


def test_usage_error_json_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--json", "--no-such-flag")
    assert code == 2 and json.loads(out)["error"]["code"] == "USAGE"
    code, out, err = run_cli(capsys, "config")
    assert code == 2 and out == "" and "needs a command" in err


def test_config_error_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVEMIND_VPN_PORT", "x")
    code, out, _ = run_cli(capsys, "config", "show", "--json")
    doc = json.loads(out)
    assert code == 2 and doc["error"]["code"] == "CONFIG" and "vpn_port" in doc["error"]["message"]


def test_data_dir_is_private(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    assert run_cli(capsys, "--data-dir", str(data), "config", "show")[0] == 0
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "logs").stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "logs" / "cli.log").stat().st_mode) == 0o600


@pytest.mark.parametrize("argv", [["--version"], ["config", "show", "--json"], ["--json", "config", "show"]])
def test_console_script_and_module(tmp_path: Path, argv: list[str]) -> None:
    env = {**os.environ, "HIVEMIND_DATA_DIR": str(tmp_path)}
    script = Path(sys.executable).with_name("hivemind-tui")
    for cmd in ([str(script)], [sys.executable, "-m", "hivemind_tui"]):
        proc = subprocess.run([*cmd, *argv], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        if "--json" in argv:
            assert "settings" in json.loads(proc.stdout)


def test_a_commands_result_is_never_formatted_on_the_way_out() -> None:
    """Python 3.11's runner formats the main task's repr, result included, when it puts SIGINT back: for a
    100,000-task list that was most of a second."""
    formatted = []

    class Big:
        def __repr__(self) -> str:
            formatted.append(1)
            return "big"

    async def command() -> Result:
        return Result({"big": Big()}, "")

    result = run_command(command())
    assert isinstance(result.data["big"], Big) and formatted == []


def _command_words(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(actions[0].choices) if actions else set()


def test_each_command_word_names_the_one_module_that_registers_it() -> None:
    """A command builds only its own module's parser (`register_all(registry, word)`): the map of words to
    modules must hold every command, and each module exactly the words the map gives it."""
    assert _command_words(build_parser()) == set(WORDS)
    for module in MODULES:
        words = {word for word, owner in WORDS.items() if owner == module}
        for word in words:
            assert _command_words(build_parser(word=word)) == words


def test_a_command_that_dials_the_pool_does_not_import_the_certificate_maker() -> None:
    """`tasks list` parses with its own module only: no `cryptography` (~50 ms of every start), no web face.
    An unknown word still gets the full usage error, every command listed."""
    probe = (
        "import sys\n"
        "from hivemind_tui.cli import parse\n"
        "args = parse(['--pool', '127.0.0.1:1', 'tasks', 'list', '--json'])\n"
        "assert args.command == 'tasks' and args.json, args\n"
        "print(sorted(m for m in ('cryptography', 'aiohttp', 'hivemind_tui.commands.pool_cmd') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    with pytest.raises(UsageError, match="invalid choice: 'tsks'.*tasks.*worker"):
        parse(["tsks", "list"])
