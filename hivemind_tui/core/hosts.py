"""Host names and addresses: which are loopback, and which address this host reaches another from."""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def addresses_of(host: str) -> frozenset[str]:
    """Every IP `host` resolves to (itself when it is one); empty when it does not resolve."""
    try:
        return frozenset(str(info[4][0]) for info in socket.getaddrinfo(host.strip("[]"), None))
    except (socket.gaierror, UnicodeError):
        return frozenset()


def source_address_towards(host: str) -> str:
    """The address this host's packets to `host` leave from: where `host` can reach this one back."""
    for address in sorted(addresses_of(host)):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:  # a UDP "connect" sends nothing
            try:
                probe.connect((address, 9))
            except OSError:
                continue
            return str(probe.getsockname()[0])
    return ""
