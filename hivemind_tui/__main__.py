"""`python -m hivemind_tui` is the same as the `hivemind-tui` command."""

from hivemind_tui.cli import main

main()
