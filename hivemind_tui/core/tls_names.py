"""Where the cluster's certificates live and which names they carry. Apart from `tls.py`, which makes and
reads certificates with `cryptography`: a command or a console that only dials the pool (most of them) needs
these names, not that library's 50 ms of imports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORKER_DOMAIN = "worker.hivemind"
CLIENT_NAME = "client"


@dataclass(frozen=True)
class TlsPaths:
    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    def cert(self, name: str) -> Path:
        return self.root / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.root / f"{name}-key.pem"


def node_label(node_id: str) -> str:
    """A node id as one DNS label (and a safe file name): node ids may hold any character."""
    label = "".join(c if c.isalnum() or c == "-" else "-" for c in node_id.lower()).strip("-") or "node"
    return label[:63]


def worker_name(node_id: str) -> str:
    """The DNS name a worker's certificate carries and the pool checks."""
    return f"{node_label(node_id)}.{WORKER_DOMAIN}"
