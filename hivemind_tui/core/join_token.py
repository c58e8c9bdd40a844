"""Join tokens: what a worker on another host needs to join a pool, in one string (as kubeadm and k3s do).

`hmjoin1.` then URL-safe base64 of JSON: the pool's addresses, the SHA-256 of its CA certificate (empty
for a plaintext pool, reached over the VPN), the token's id and its secret. The pool keeps only a hash of
the secret. The worker pins the CA by the fingerprint before it sends the secret anywhere.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from hivemind_tui.core.errors import UsageError

PREFIX = "hmjoin1."


@dataclass(frozen=True)
class JoinToken:
    addresses: tuple[str, ...]
    ca_sha256: str
    token_id: str
    secret: str

    def encode(self) -> str:
        data = {"p": list(self.addresses), "ca": self.ca_sha256, "id": self.token_id, "s": self.secret}
        return PREFIX + base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(text: str) -> JoinToken:
    """The token in `text`; a UsageError that never repeats the text (it may be a real token, mistyped)."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise UsageError("not a join token (it should start with hmjoin1.; make one with `pool join-token`)")
    body = text[len(PREFIX) :]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        addresses = tuple(str(a) for a in data["p"])
        token = JoinToken(addresses, str(data["ca"]), str(data["id"]), str(data["s"]))
    except (ValueError, KeyError, TypeError):
        raise UsageError("the join token is damaged (copy it again, whole)") from None
    if not addresses or not token.token_id or not token.secret:
        raise UsageError("the join token is damaged (copy it again, whole)")
    return token
