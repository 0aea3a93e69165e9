"""Which process is writing a streaming reply, and whether it still runs.

A reply is saved as it streams with status 'streaming'. Opening the database marks such
replies 'interrupted' only when the process writing them is gone: a second chatapp must
not mark the first one's live reply as a crash. A writer is "pid:start time" (the start
time tells a live process from a later one given the same pid).
"""

from __future__ import annotations

import functools
import os


def _start_time(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).create_time(), 2)


@functools.cache
def this_writer() -> str:
    pid = os.getpid()
    return f"{pid}:{_start_time(pid):.2f}"


def is_running(writer: str | None) -> bool:
    """Whether the process named by ``writer`` still runs (None, or garbage: no)."""
    import psutil

    try:
        pid_text, start_text = (writer or "").split(":")
        pid, start = int(pid_text), float(start_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return writer == this_writer()
    try:
        return abs(_start_time(pid) - start) < 0.015
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
