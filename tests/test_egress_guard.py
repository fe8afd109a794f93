"""The egress guard is active in every test and actually blocks public addresses."""
import socket
import threading

import pytest

from tests import egress_guard


def test_guard_blocks_public_ip():
    with pytest.raises(egress_guard.EgressBlocked):
        socket.create_connection(("93.184.216.34", 80), timeout=2)


def test_guard_blocks_public_name_lookup():
    with pytest.raises(egress_guard.EgressBlocked):
        socket.getaddrinfo("huggingface.co", 443)


def test_guard_blocks_udp_sendto():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(egress_guard.EgressBlocked):
            s.sendto(b"x", ("8.8.8.8", 53))
    finally:
        s.close()


def test_guard_allows_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    t = threading.Thread(target=lambda: server.accept()[0].close())
    t.start()
    socket.create_connection(("localhost", port), timeout=2).close()
    t.join(2)
    server.close()


def test_package_sets_offline_env():
    import os

    import assistant  # noqa: F401

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["ANONYMIZED_TELEMETRY"] == "False"
