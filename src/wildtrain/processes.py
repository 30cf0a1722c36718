"""Whether a process id still names a running process: services and tune workers both record pids in files and
must tell a live owner from a stale record."""

from __future__ import annotations

import os


def alive(pid: int | None) -> bool:
    """True if `pid` runs (also when it belongs to another user, which os.kill refuses with PermissionError)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
