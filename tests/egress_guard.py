"""Zero network egress for the whole test suite.

Any socket connect (TCP or UDP) to a non-loopback address, and any name lookup of a
non-local host, raises EgressBlocked. Loopback stays open so tests can run real local servers
(llama-cpp-python's server, a Chroma server, onboard serve).
"""
from __future__ import annotations

import ipaddress
import socket

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class EgressBlocked(RuntimeError):
    pass


def _is_local_host(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback or host == "0.0.0.0"
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto
_real_getaddrinfo = socket.getaddrinfo


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local_host(address[0]):
        raise EgressBlocked(f"network egress blocked in tests: connect to {address!r}")


def _connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def _sendto(self, data, *args):
    _check(self, args[-1])
    return _real_sendto(self, data, *args)


def _getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_local_host(host):
        raise EgressBlocked(f"network egress blocked in tests: name lookup of {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


_real_gethostbyname = socket.gethostbyname
_real_gethostbyname_ex = socket.gethostbyname_ex


def _gethostbyname(host):
    if not _is_local_host(host):
        raise EgressBlocked(f"network egress blocked in tests: name lookup of {host!r}")
    return _real_gethostbyname(host)


def _gethostbyname_ex(host):
    if not _is_local_host(host):
        raise EgressBlocked(f"network egress blocked in tests: name lookup of {host!r}")
    return _real_gethostbyname_ex(host)


def install() -> None:
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.socket.sendto = _sendto
    # DNS is egress too (a lookup leaks the name even when no connection follows)
    socket.getaddrinfo = _getaddrinfo
    socket.gethostbyname = _gethostbyname
    socket.gethostbyname_ex = _gethostbyname_ex


def installed() -> bool:
    return socket.socket.connect is _connect
