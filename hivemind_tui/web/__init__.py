"""The HTTP face: the JSON API, /health and /metrics, over the same services as the CLI and the console."""
