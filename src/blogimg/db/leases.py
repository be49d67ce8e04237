"""Who holds a lease: owner names that let a worker on the same host see that an owner is gone."""

from __future__ import annotations

import os
import socket


def local_prefix() -> str:
    """This host and PID namespace: two containers may share a host name but not their PIDs.

    Only owners with the same prefix can be judged dead by their PID; anything else waits for
    its lease to expire.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:  # not Linux: the host name alone
        namespace = ""
    host = socket.gethostname().replace(":", "-")
    return f"{host}~{namespace}" if namespace else host


def lease_owner_name() -> str:
    """``host~pidns:pid``: lets a worker in the same PID namespace see that an owner is gone."""
    return f"{local_prefix()}:{os.getpid()}"


def process_alive(pid: int) -> bool:
    """True unless ``pid`` names no process (a process we may not signal is alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
