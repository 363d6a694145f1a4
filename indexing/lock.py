"""One writer per store: a POSIX record lock on ``DIR/.lock`` that names its holder.

``fcntl.lockf`` (F_SETLK) locks belong to the process: a child forked while the lock is held
does not inherit it (unlike ``flock``), and the kernel drops it when the holder dies, SIGKILL
included. The file is opened with ``O_NOFOLLOW`` (a planted symlink is refused, never
truncated) and ``O_CLOEXEC``. The holder writes its PID into the file so a waiting or refused
writer can name it. POSIX locks do not exclude threads of one process, so a process-wide
registry does that.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from indexing.errors import StoreError
from indexing.generations import check_store_folder

LOCK_FILE = ".lock"
POLL_SECONDS = 0.1

_held: set[str] = set()  # lock files held by this process (POSIX locks do not exclude threads)
_held_guard = threading.Lock()


class StoreLockedError(StoreError):
    """Another writer holds the store's lock."""


class StoreLock:
    """Exclusive write lock on a store folder. Use as a context manager.

    ``wait`` seconds to wait for another writer (0: fail at once); ``on_wait(message)`` is
    called once when the lock is busy and this lock is going to wait for it.
    """

    def __init__(self, store_dir: str | Path, wait: float = 0.0, on_wait: Callable[[str], None] | None = None) -> None:
        self.dir = Path(store_dir)
        self.wait = max(0.0, float(wait))
        self.on_wait = on_wait
        self._fd: int | None = None
        self._key = ""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def file_id(self) -> tuple[int, int] | None:
        """(device, inode) of the held lock file: reading it through another name (a hard link)
        and closing that descriptor would drop the lock."""
        if self._fd is None:
            return None
        st = os.fstat(self._fd)
        return st.st_dev, st.st_ino

    def acquire(self) -> StoreLock:
        make_store_dir(self.dir)
        check_store_folder(self.dir)
        file = self.dir / LOCK_FILE
        self._key = str(self.dir.resolve() / LOCK_FILE)  # not file.resolve(): that would follow a planted symlink
        deadline = time.monotonic() + self.wait
        told = False
        while True:
            holder = self._try_once(file)
            if holder is None:
                return self
            message = f"{holder} is writing {self.dir}"
            if time.monotonic() >= deadline:
                hint = "wait for it to finish" + ("" if self.wait else " or pass --wait SECONDS")
                raise StoreLockedError(f"{message}; {hint}")
            if not told and self.on_wait is not None:
                self.on_wait(f"{message}; waiting up to {self.wait:g} s")
                told = True
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def _try_once(self, file: Path) -> str | None:
        """Take the lock, or return a description of its holder."""
        with _held_guard:
            if self._key in _held:
                return f"another writer in this process (pid {os.getpid()})"
            try:
                fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise StoreError(f"{file} is a symbolic link; remove it (a store's lock file must be a plain file)") from exc
                raise StoreError(f"cannot open the lock file {file}: {exc.strerror or exc}") from exc
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise StoreError(f"cannot lock {file}: {exc.strerror or exc}") from exc
                pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)  # we hold no lock on it, so closing drops nothing
                return f"another process (pid {pid})" if pid.isascii() and pid.isdigit() else "another process"
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._fd = fd
            _held.add(self._key)
            return None

    def release(self) -> None:
        if self._fd is None:
            return
        with _held_guard:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
                _held.discard(self._key)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def make_store_dir(store_dir: Path) -> None:
    """Create the store folder; a path that is (or runs through) a file gives one clear error."""
    if store_dir.exists() and not store_dir.is_dir():
        raise StoreError(f"{store_dir} is a file, not a store folder; pick a folder for --store")
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise StoreError(f"cannot create the store folder {store_dir}: a part of that path is a file") from exc
    except OSError as exc:
        raise StoreError(f"cannot create the store folder {store_dir}: {exc.strerror or exc}") from exc
