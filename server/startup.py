"""What a process claims before it serves: its listening socket and its data path.

``livepilot serve`` (and ``demo``, ``check``) start in this order, so a start that
cannot succeed fails with one line and leaves nothing behind:

1. :func:`bind_listener` binds the port (before any file is created: a port
   already in use is reported and the data path is never touched);
2. :func:`lock_data_path` takes an exclusive ``flock`` on ``<data-path>.lock``
   (decision 0019): a second process on the same data file would accept joins
   and ack commands that the first process's members never see, so it is
   refused, naming the process that holds the lock;
3. only then is the SQLite file opened (by the app's lifespan).

Every failure is a :class:`StartupError` whose message is one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from types import TracebackType
from typing import Self

__all__ = ["DataLock", "DataPathInUse", "StartupError", "bind_listener", "lock_data_path"]


class StartupError(Exception):
    """The process cannot start; ``str()`` is one line saying why."""


class DataPathInUse(StartupError):
    """Another process holds the data path's lock."""

    def __init__(self, data_path: str, lock_path: str, pid: int | None) -> None:
        self.data_path = data_path
        self.lock_path = lock_path
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"data path {data_path} is in use by {holder} (lock {lock_path})")


def bind_listener(host: str, port: int, *, setting: str = "--port") -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening: uvicorn does that).

    ``setting`` names where the port came from, for the message.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn and asyncio do: a restart may bind while old connections sit in
        # TIME_WAIT; a port another socket *listens* on is still refused on Linux.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use ({setting})") from None
        reason = e.strerror or str(e)
        raise StartupError(f"cannot listen on {host}:{port} ({setting}): {reason}") from None
    return sock


class DataLock:
    """The exclusive lock on a data path; held until :meth:`release` or the process ends.

    The kernel drops a ``flock`` when its process dies, even by ``kill -9``, so
    a crashed server never leaves a stale lock. The lock file is left in place:
    deleting it would let a third process lock a new file while the second one
    still holds the old one.
    """

    def __init__(self, fd: int, data_path: str, lock_path: str) -> None:
        self._fd: int | None = fd
        self.data_path = data_path
        """The data file, symlinks resolved."""
        self.lock_path = lock_path

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def lock_data_path(data_path: str, *, setting: str = "--data-path") -> DataLock:
    """Lock ``<data_path>.lock`` exclusively and write this process's id into it.

    Raises :class:`DataPathInUse` if another process holds it, and
    :class:`StartupError` (naming the path and ``setting``) if the path cannot be
    used at all: its directory is missing, it is a directory, the lock file
    cannot be created.
    """
    path = os.path.realpath(data_path)  # one lock per file, however it is named
    directory = os.path.dirname(path)

    def unusable(reason: str) -> StartupError:
        return StartupError(f"data path {data_path} ({setting}): {reason}")

    if not os.path.isdir(directory):
        raise unusable(f"directory {directory} does not exist")
    if os.path.isdir(path):
        raise unusable("it is a directory, not a file")
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise unusable(f"cannot open the lock file {lock_path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _read_pid(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataPathInUse(path, lock_path, holder) from None
        raise unusable(f"cannot lock {lock_path}: {e.strerror or e}") from None
    # Locked: say who holds it, for the message a second process prints.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataLock(fd, path, lock_path)


def _read_pid(fd: int) -> int | None:
    """The process id a lock holder wrote, or None (not written yet, or garbled)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
