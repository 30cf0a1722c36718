import os
import subprocess
import sys

from wildtrain.processes import alive


def test_alive_tells_a_running_process_from_a_finished_one():
    assert alive(os.getpid())
    assert not alive(None) and not alive(0)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process any more
    assert not alive(child.pid)
    assert alive(1)  # another user's process (init): os.kill says PermissionError or succeeds, never "gone"
