"""Whether a process that wrote something (a training run, a temporary file) is still alive."""

from __future__ import annotations

import os
import socket


def process_alive(pid: int) -> bool:
    """True while process `pid` exists on this machine (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def this_host() -> str:
    return socket.gethostname()
