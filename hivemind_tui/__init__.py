"""hivemind-tui: the HiveMind Master Node as a keyboard-driven terminal console."""

__version__ = "0.1.0"
