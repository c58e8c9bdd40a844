"""`config show`: every effective setting, where it came from, secrets redacted."""

from __future__ import annotations

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.core.config import describe_settings


def register(registry: CommandRegistry) -> None:
    group = registry.group("config", "inspect the settings")
    group.command("show", show, "print each effective setting and its source")


def show(ctx: Context) -> Result:
    rows = describe_settings(ctx.loaded)
    width = max(len(r["key"]) for r in rows)
    lines = [f"# config file: {ctx.loaded.config_file}", f"# data dir:    {ctx.data_dir.root}"]
    for r in rows:
        lines.append(f"{r['key']:<{width}}  {r['value']!s:<24}  {r['source']}")
    data = {
        "config_file": str(ctx.loaded.config_file),
        "data_dir": str(ctx.data_dir.root),
        "settings": {r["key"]: {"value": r["value"], "source": r["source"], "env": r["env"]} for r in rows},
    }
    return Result(data, "\n".join(lines))
