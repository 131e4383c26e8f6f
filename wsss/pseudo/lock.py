"""A lock file on an output folder, so two runs never write (and compact) the same manifest.

``<folder>/.lock`` is created with ``O_CREAT | O_EXCL`` (atomic, also on NFS v3+) and holds the holder's
PID, host, boot id and process start time as JSON. It is removed when the holder releases it. A lock
left by a process that died (SIGKILL, power loss) is *stale* and is taken over: same host and boot, and
that PID is no longer alive (or is alive but started at another time, i.e. a reused PID), or the machine
rebooted since. A lock from another host cannot be checked and is never taken over. Of several runs
taking over one stale lock at once only one wins (``.lock.takeover`` serialises the removal).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

LOCK_NAME = ".lock"
# a lock file still empty or unparsable after this long belongs to a process that died while creating it
_UNREADABLE_STALE_S = 30.0


class LockHeld(RuntimeError):
    """Another live run holds the folder; the message names its PID and host."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _boot_id() -> str | None:
    text = _read_text("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def _process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused PID from the holder."""
    text = _read_text(f"/proc/{pid}/stat")
    if not text:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its closing ')'
        return int(text[text.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def this_holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "boot": _boot_id(),
            "start": _process_start(os.getpid()), "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def is_stale(holder: dict[str, Any]) -> bool:
    """True when the recorded holder is certainly gone (only decidable on its own host)."""
    if holder.get("host") != socket.gethostname():
        return False
    boot = _boot_id()
    if holder.get("boot") and boot and holder["boot"] != boot:
        return True  # rebooted since: every process of that boot is gone
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    if not _pid_alive(pid):
        return True
    start = _process_start(pid)
    return holder.get("start") is not None and start is not None and start != holder["start"]


class FolderLock:
    """``with FolderLock(folder):`` or ``acquire()`` / ``release()``; not re-entrant."""

    def __init__(self, folder: str | Path, name: str = LOCK_NAME) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self._mine: str | None = None  # the exact content we wrote: release removes only our own lock

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(200):  # each round lost to another taker re-reads the lock (bounded: never spin forever)
            content = json.dumps(this_holder())
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            try:
                os.write(fd, content.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._mine = content
            return
        raise LockHeld(f"could not take the lock {self.path}: other runs keep taking it", {})

    def _take_over_if_stale(self) -> None:
        """Remove a stale lock (raise :class:`LockHeld` for a live one) so the caller can retry."""
        text = _read_text(str(self.path))
        if text is None:
            return  # released meanwhile: retry
        try:
            holder = json.loads(text)
            if not isinstance(holder, dict):
                raise ValueError(text)
        except ValueError:
            holder = {}
            with contextlib.suppress(OSError):
                if time.time() - self.path.stat().st_mtime < _UNREADABLE_STALE_S:
                    raise LockHeld(f"{self.folder} is being locked by another run (the lock {self.path} is "
                                   "still being written); try again in a minute", holder) from None
        if holder and not is_stale(holder):
            raise LockHeld(
                f"{self.folder} is in use by another run: PID {holder.get('pid')} on {holder.get('host')} "
                f"since {holder.get('since')} (lock {self.path}). Wait for it to finish or stop it; if that "
                "process is gone (another host can not be checked from here), delete the lock file", holder)
        # Stale. Only the holder of the takeover guard may remove it, and while it is there nobody can create
        # a fresh lock (O_EXCL), so if the file re-read under the guard is unchanged it is the stale one.
        guard = self.path.with_name(self.path.name + ".takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:  # another run is taking over right now; a guard its dead taker left expires
            with contextlib.suppress(OSError):
                if time.time() - guard.stat().st_mtime > _UNREADABLE_STALE_S:
                    guard.unlink()
            time.sleep(0.02)
            return
        try:
            if _read_text(str(self.path)) == text:
                self.path.unlink()
        finally:
            guard.unlink()

    def release(self) -> None:
        if self._mine is None:
            return
        if _read_text(str(self.path)) == self._mine:  # never remove a lock that is not ours
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._mine = None

    @property
    def held(self) -> bool:
        return self._mine is not None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
