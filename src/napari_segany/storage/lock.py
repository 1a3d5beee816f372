"""One writer at a time: a kernel lock on a labels store, and who holds it.

A store's ``.segany/lock`` file is locked with ``flock(LOCK_EX)`` around every write
transaction (one plane or chunk: read, change, write, journal). The kernel drops the lock
when its holder dies, however it dies, so a crashed writer never blocks the store. While
holding the lock, the writer writes its name into the file (process id, host, user,
what it is doing, as JSON padded with spaces), so a waiting writer can say whom it waits
for.

Each open writer also holds ``flock(LOCK_EX)`` on a file of its own under
``.segany/writers/`` for as long as the store is open: whether that lock can be taken
tells another process whether the writer is still alive (its unfinished operation is
then left alone) or gone (its unfinished operation can be recovered).

File systems: ``flock`` works on local file systems (ext4, xfs, btrfs, APFS, tmpfs) and
on NFS v4 and recent Linux NFS clients (emulated with byte-range locks); some network or
FUSE file systems (older NFS, SMB/CIFS mounts without locking, some object-store
mounts) accept the call without locking anything. There, two processes writing one store
at the same time can lose each other's changes; one writer at a time is still safe.
On Windows there is no ``fcntl``: the lock is held within the process only.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["StoreLock", "WriterMark", "holder_info", "writer_alive"]

#: How often a waiting writer re-checks the lock, and tells whom it waits for (seconds).
_POLL = 0.05
_REPORT_EVERY = 5.0


def holder_info(what: str = "") -> dict[str, Any]:
    """The name a writer gives itself: process, host, user, time and what it does."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "?"
    return {"pid": os.getpid(), "host": socket.gethostname(), "user": user,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "what": what}


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "another writer"
    return (f"process {info.get('pid')} of {info.get('user')} on {info.get('host')} "
            f"({info.get('what') or 'writing'}, since {info.get('since')})")


class StoreLock:
    """The write lock of one store, re-entrant within this object's thread.

    Parameters
    ----------
    path : path
        The lock file (created when missing).
    on_wait : callable, optional
        ``on_wait(message)`` while another writer holds the lock (every 5 s); default:
        a :mod:`warnings` warning the first time.
    timeout : float or None
        Give up after this many seconds with :class:`TimeoutError` naming the holder
        (None: wait as long as it takes).
    """

    def __init__(self, path: str | os.PathLike, *, on_wait: Callable[[str], Any] | None = None,
                 timeout: float | None = None) -> None:
        self.path = Path(path)
        self.on_wait, self.timeout = on_wait, timeout
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its current (or last) holder."""
        try:
            text = self.path.read_text()
            return json.loads(text) if text.strip() else {}
        except (OSError, ValueError):
            return {}

    @property
    def local(self) -> threading.RLock:
        """The in-process part of the lock alone (no file lock): excludes this process's
        other threads, e.g. while reading state that a write would change."""
        return self._rlock

    @contextlib.contextmanager
    def hold(self, what: str = "") -> Iterator[None]:
        """Hold the lock for the block (nested holds in this thread are free)."""
        with self._rlock:
            if self._depth == 0:
                self._acquire(what)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()

    def _acquire(self, what: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is not None:
            start = last = time.monotonic()
            told = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    now = time.monotonic()
                    if self.timeout is not None and now - start > self.timeout:
                        os.close(fd)
                        raise TimeoutError(
                            f"the labels store is being written by {_describe(self.holder())}; "
                            f"gave up after {self.timeout:g} s") from None
                    if not told or now - last > _REPORT_EVERY:
                        msg = (f"waiting for {_describe(self.holder())} to finish writing "
                               f"{self.path.parent.parent.name}")
                        if self.on_wait is not None:
                            self.on_wait(msg)
                        elif not told:
                            import warnings

                            warnings.warn(msg, stacklevel=4)
                        told, last = True, now
                    time.sleep(_POLL)
        try:
            # Overwritten in place, padded with spaces to the file's length (JSON allows
            # trailing whitespace): truncating the file on every transaction made the file
            # system free and re-allocate its block each time.
            text = json.dumps(holder_info(what)).encode()
            size = os.fstat(fd).st_size
            os.pwrite(fd, text.ljust(size), 0)
        except OSError:  # a read-only or full file system: the lock still holds
            pass
        self._fd = fd

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class WriterMark:
    """A writer's own file, locked for as long as the writer (an open store) lives."""

    def __init__(self, folder: str | os.PathLike, writer_id: str, what: str = "") -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / writer_id
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(OSError):
            os.write(fd, json.dumps(holder_info(what)).encode())
        self._fd: int | None = fd
        self._finalizer = weakref.finalize(self, _close_fd, fd)

    def close(self) -> None:
        """Let go of the mark (the writer is gone); its file is removed."""
        if self._fd is not None:
            self._fd = None
            self._finalizer()
            with contextlib.suppress(OSError):
                self.path.unlink()


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def writer_alive(folder: str | os.PathLike, writer_id: str) -> bool:
    """Whether the writer ``writer_id`` still holds its mark (a missing mark: gone).

    Marks held in this very process count as alive (``flock`` of a second descriptor in
    one process conflicts like another process would).
    """
    path = Path(folder) / writer_id
    if fcntl is None:  # pragma: no cover - Windows: no way to tell; assume alive
        return path.exists()
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
