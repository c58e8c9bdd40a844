"""The host panel's connection count comes from the kernel's socket counters (/proc/net/sockstat), not from
psutil's listing of every socket mapped to its process."""

from __future__ import annotations

import socket
from pathlib import Path

from hivemind_tui.services.host_metrics import inet_sockets

SOCKSTAT = """sockets: used 55
TCP: inuse 3 orphan 0 tw 2 alloc 17 mem 0
UDP: inuse 1 mem 0
UDPLITE: inuse 0
RAW: inuse 4
FRAG: inuse 0 memory 0
"""
SOCKSTAT6 = """TCP6: inuse 16
UDP6: inuse 5
UDPLITE6: inuse 0
RAW6: inuse 0
FRAG6: inuse 0 memory 0
"""


def test_tcp_and_udp_sockets_of_both_families_and_time_wait_are_counted(tmp_path: Path) -> None:
    (tmp_path / "sockstat").write_text(SOCKSTAT)
    (tmp_path / "sockstat6").write_text(SOCKSTAT6)
    assert inet_sockets(tmp_path) == 3 + 2 + 1 + 16 + 5  # raw sockets are not connections


def test_a_host_without_ipv6_counts_the_rest_and_garbage_counts_nothing(tmp_path: Path) -> None:
    (tmp_path / "sockstat").write_text(SOCKSTAT)
    assert inet_sockets(tmp_path) == 6
    (tmp_path / "sockstat").write_text("TCP: inuse many\n")
    assert inet_sockets(tmp_path) is None
    assert inet_sockets(tmp_path / "absent") is None


def test_a_listening_socket_of_ours_is_counted_on_this_host() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        count = inet_sockets()
    assert count is not None and count >= 1
