"""Test-only network guard, loaded at start-up by every Python process that has this folder on
PYTHONPATH (children inherit it, forked children inherit the patches). Each attempt to reach a
non-loopback address (connect, connect_ex, sendto, getaddrinfo/gethostbyname of a non-loopback
name) is appended as a JSON line to $RAG_NETGUARD_LOG and refused, so nothing leaves the machine."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import sys

LOG = os.environ.get("RAG_NETGUARD_LOG", "")
LOCAL_NAMES = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _local(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = str(host).strip("[]").split("%")[0].lower()
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or ip.is_unspecified or bool(mapped and mapped.is_loopback)


def _record(call: str, host: object, port: object) -> None:
    line = json.dumps({"pid": os.getpid(), "call": call, "host": str(host), "port": str(port), "argv": sys.argv[:3]})
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _checked(call: str, address: object) -> None:
    if isinstance(address, tuple) and len(address) >= 2 and not _local(address[0]):
        _record(call, address[0], address[1])
        raise OSError(errno.ENETUNREACH, f"network guard: {call} to {address[0]} refused")


def _install() -> None:
    connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    getaddrinfo, gethostbyname = socket.getaddrinfo, socket.gethostbyname

    def guarded_connect(self, address):  # type: ignore[no-untyped-def]
        _checked("connect", address)
        return connect(self, address)

    def guarded_connect_ex(self, address):  # type: ignore[no-untyped-def]
        _checked("connect_ex", address)
        return connect_ex(self, address)

    def guarded_sendto(self, data, *args):  # type: ignore[no-untyped-def]
        _checked("sendto", args[-1] if args else None)
        return sendto(self, data, *args)

    def guarded_getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not _local(host):
            _record("getaddrinfo", host, port)
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {host} refused")
        return getaddrinfo(host, port, *args, **kwargs)

    def guarded_gethostbyname(host):  # type: ignore[no-untyped-def]
        if not _local(host):
            _record("gethostbyname", host, "")
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {host} refused")
        return gethostbyname(host)

    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = guarded_connect, guarded_connect_ex, guarded_sendto
    socket.getaddrinfo, socket.gethostbyname = guarded_getaddrinfo, guarded_gethostbyname


if LOG:
    _install()
