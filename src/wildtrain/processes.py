"""Whether a process id still names a running process, and stopping one with what it started: services, Label
Studio and tune workers all record pids in files and must tell a live owner from a stale record."""

from __future__ import annotations

import os
import signal
import time


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


def stop_group(pid: int | None, grace_s: float) -> None:
    """SIGTERM the process group `pid` leads (a server and its workers), SIGKILL it after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(pid):
            return
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while alive(pid) and time.monotonic() < deadline:
            try:  # reap it when it is our child (the test fixture); else wait for it to go
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                pass
            time.sleep(0.2)
