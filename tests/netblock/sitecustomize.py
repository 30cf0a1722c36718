"""Loaded by every Python process of an end-to-end test (via PYTHONPATH): refuse and record any network use.

Loopback and Unix sockets stay allowed (DVC and MLflow may use local IPC); any DNS lookup or connection
to another host is logged to $WILDTRAIN_NETLOG and fails, so a test can assert the log stayed empty.
"""

import os
import socket
import sys

_LOG = os.environ.get("WILDTRAIN_NETLOG")
_LOCAL = {"localhost", "127.0.0.1", "::1", "", None, "0.0.0.0"}


def _local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return host in _LOCAL or (isinstance(host, str) and host.startswith("127."))


def _refuse(what: str) -> None:
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {' '.join(sys.argv[:2])}: {what}\n")
    raise OSError(f"network access blocked in tests: {what}")


def _hook(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, addr = args[0], args[-1]
        if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", object()) or isinstance(addr, (str, bytes)):
            return
        if isinstance(addr, tuple) and not _local(addr[0]):
            _refuse(f"{event} {addr}")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        if not _local(args[0]):
            _refuse(f"{event} {args[0]!r}")


if _LOG:
    sys.addaudithook(_hook)
