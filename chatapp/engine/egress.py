"""A guard that makes any network use in the worker process fail, and records it.

The worker must never reach the network (models are local folders; transformers runs
with `HF_HUB_OFFLINE=1`). With `CHATAPP_SOCKET_GUARD=1` in its environment the worker
installs an audit hook (PEP 578) before anything else: every `socket.connect`,
`socket.getaddrinfo`, `socket.gethostbyname`, `socket.sendto` or `socket.bind` raises
`PermissionError`, and is appended as one line to the file named by
`CHATAPP_SOCKET_GUARD_LOG` (if set). Tests run a whole turn under it and check the log.

Audit hooks cannot be removed, so the guard lasts for the life of the process. Local
pipes and queues (multiprocessing uses `os.pipe` on Linux) are not sockets and pass.
"""

from __future__ import annotations

import os
import sys
from typing import Any

GUARDED_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.sendto",
        "socket.sendmsg",
        "socket.bind",
    }
)

_installed = False


def install_socket_guard(log_path: str | None = None) -> None:
    """Refuse (and record) every network operation in this process from now on."""
    global _installed
    if _installed:
        return
    _installed = True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in GUARDED_EVENTS:
            return
        if log_path:
            try:
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write(f"{os.getpid()} {event} {args!r:.300}\n")
            except OSError:
                pass
        raise PermissionError(f"network access is not allowed in the model worker ({event})")

    sys.addaudithook(hook)
    if log_path:  # the first line says the guard is on (tests check it was installed)
        try:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()} guard installed\n")
        except OSError:
            pass


def guard_from_environment() -> bool:
    """Install the guard when `CHATAPP_SOCKET_GUARD=1`; True when it was asked for."""
    if os.environ.get("CHATAPP_SOCKET_GUARD") != "1":
        return False
    install_socket_guard(os.environ.get("CHATAPP_SOCKET_GUARD_LOG"))
    return True
