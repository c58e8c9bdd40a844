"""Reusable logic of the console and the command line: plain async Python, never Textual."""
