"""End every process a scan started when the scan itself is killed.

A local Ray lives in processes the scan starts (GCS, raylet, log monitor) and in the raylet's own
children (the dashboard and runtime-env agents, the ``ray::`` workers). The first die with the scan
(Ray ties them to the driver on Linux) and the workers follow the raylet, but the agents outlived a
SIGKILLed ``anima scan`` by a minute (Ray 2.60). This script runs beside the scan, in its own
session so a Ctrl-C does not end it first, notes the scan's descendants while the scan lives, and
kills those still running once it is gone. Linux only (it reads ``/proc``); it imports nothing but
the standard library, so it starts fast.

    python reaper.py SCAN_PID
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

POLL_SECONDS = 0.5
PROC = "/proc"


def _stat(pid: int) -> tuple[int, str] | None:
    """The parent pid and start time of ``pid`` (the pair tells a process from a later one that
    got the same pid), or None when it is gone."""
    try:
        with open(f"{PROC}/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the name, in parentheses, may hold spaces
    return int(fields[1]), fields[19]


def _descendants(roots: set[int]) -> dict[int, str]:
    """Every running process below ``roots``, with its start time."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            children.setdefault(found[0], []).append((int(entry), found[1]))
    below: dict[int, str] = {}
    todo = list(roots)
    while todo:
        for pid, started in children.get(todo.pop(), []):
            if pid not in below:
                below[pid] = started
                todo.append(pid)
    return below


def watch(scan: int) -> None:
    """Note the descendants of ``scan`` until it is gone, then kill those still running."""
    me = os.getpid()
    known: dict[int, str] = {}
    while os.getppid() == scan:
        known.update(_descendants({scan}))
        time.sleep(POLL_SECONDS)
    known.update(_descendants(set(known)))  # started by an orphan since the last look
    known.pop(me, None)
    for pid, started in known.items():
        found = _stat(pid)
        if found is not None and found[1] == started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]))
