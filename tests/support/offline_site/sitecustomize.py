"""A DNS-lookup log for tests of runs that must stay offline (Ray tests: the driver, Ray's workers and agents).

Python imports ``sitecustomize`` at start-up from the first folder on ``sys.path`` that has one: put this folder
first on ``PYTHONPATH`` in the environment of a subprocess (or of a Ray cluster a test starts: its workers
inherit it) and set ``CERBERO_HF_DNS_LOG`` to a file. Then every name lookup that could leave the machine
(``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr``, ``getnameinfo`` of anything but an
IP literal or a loopback name), and every TCP connection opened to a non-loopback address (``connect``), appends
a line ``<pid> <function> <name> <argv0> at <frames>`` to that file; the lookup still
runs. Every process that loaded this module appends ``<pid> <argv>`` to ``<log>.procs``, so a test can check
that the processes it cares about were watched at all. A test imports this file by path and calls
:func:`install` to watch its own process too.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_local(host) -> bool:
    """An IP literal (no lookup), a loopback name, or no host at all."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip().lower().rstrip(".")
    if not host or host in LOOPBACK_NAMES:
        return True
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        return False


ORIGINALS: dict = {}
REVERSE = ("gethostbyaddr", "getnameinfo")  # an address to a name: a lookup unless the address is loopback


def _loopback_address(host) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return is_local(host)


def install(log: str) -> None:
    """Wrap the socket module's lookups so that non-local names are appended to ``log`` (once per process)."""
    if ORIGINALS:
        return

    def record(function: str, host, always: bool = False) -> None:
        if always or not (_loopback_address(host) if function in REVERSE else is_local(host)):
            import traceback

            where = " < ".join(f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno}"
                               for f in reversed(traceback.extract_stack(limit=10)[:-2]))
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {function} {host} {os.path.basename(sys.argv[0]) if sys.argv else ''} "
                         f"at {where}\n")

    def wrap(name: str, host_of):
        original = ORIGINALS[name] = getattr(socket, name)

        def lookup(*args, **kwargs):
            record(name, host_of(args, kwargs))
            return original(*args, **kwargs)

        setattr(socket, name, lookup)

    original_connect = ORIGINALS["connect"] = socket.socket.connect

    def connect(sock, address):  # a TCP connection to a non-loopback address (a UDP connect sends nothing)
        if sock.type == socket.SOCK_STREAM and isinstance(address, tuple) and not _loopback_address(address[0]):
            record("connect", f"{address[0]}:{address[1]}", always=True)
        return original_connect(sock, address)

    socket.socket.connect = connect
    wrap("getaddrinfo", lambda a, k: a[0] if a else k.get("host"))
    for name in ("gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        wrap(name, lambda a, k: a[0] if a else None)
    wrap("getnameinfo", lambda a, k: a[0][0] if a and a[0] else None)
    with open(log + ".procs", "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()} {' '.join(sys.argv)[:300]}\n")



def uninstall() -> None:
    """Put the socket module's own lookups back."""
    for name, original in ORIGINALS.items():
        setattr(socket.socket if name == "connect" else socket, name, original)
    ORIGINALS.clear()


if os.environ.get("CERBERO_HF_DNS_LOG"):
    install(os.environ["CERBERO_HF_DNS_LOG"])
