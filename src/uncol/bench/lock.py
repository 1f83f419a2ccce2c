"""A lock per bench cell, so that several ``uncol bench`` processes share one grid and train each cell once.

The lock is a file created atomically (``os.open(O_CREAT | O_EXCL)``) holding the owner's pid, host
and start time. A lock whose owner is gone (same host, no such process) is stale and taken over; the
take-over itself is guarded by a second exclusive file so that two processes never both take over the
same stale lock. A lock held on another host is never taken over (its process cannot be checked): the
message names the host and the file to delete if that process is gone.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

#: A take-over guard (or an empty lock: its owner died between creating and writing it) older than this is stale.
STALE_EMPTY_S = 60.0


def _read(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def holder(path: Path) -> dict[str, Any] | None:
    """Who holds the lock at ``path``: ``{"pid", "host", "time"}``, None when it is free or stale."""
    if not path.exists():
        return None
    info = _read(path)
    if info is None:  # being written right now, or its writer died before writing
        return None if _age(path) > STALE_EMPTY_S else {"pid": None, "host": "?", "time": None}
    if info.get("host") != socket.gethostname():
        return info
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except ProcessLookupError:
        return None
    except (PermissionError, ValueError, TypeError, OverflowError):
        return info
    return info


def _take_over(path: Path) -> None:
    """Remove the stale lock at ``path``, unless another process is taking it over or it changed meanwhile."""
    guard = path.with_name(path.name + ".takeover")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _age(guard) > STALE_EMPTY_S:
            guard.unlink(missing_ok=True)
        return
    os.close(fd)
    try:
        if path.exists() and holder(path) is None:  # checked again under the guard: still stale
            path.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


def acquire(path: Path) -> bool:
    """Take the lock at ``path`` (its folder is created); False when a live process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if holder(path) is not None:
                return False
            _take_over(path)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        return True
    return False


def release(path: Path) -> None:
    """Delete the lock at ``path`` if this process holds it."""
    info = _read(path)
    if info is not None and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def describe(info: dict[str, Any] | None, path: Path) -> str:
    """``"pid 123 on host-a"`` plus, for another host, what to do if that process is gone."""
    if info is None:
        return "nobody"
    who = f"pid {info.get('pid')} on {info.get('host')}"
    if info.get("host") not in (socket.gethostname(), "?"):
        who += f" (delete {str(path)!r} if that process is gone)"
    return who
