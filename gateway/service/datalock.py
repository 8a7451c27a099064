"""One gateway per data directory: an exclusive fcntl lock on HOME/huaico.lock.

Two `huaico run` on one data directory would split the bytes of one serial
port between them and both dispatch every alert; so `run` takes this lock
for its whole life and a second one refuses at once, naming the first's pid.
`restore` takes it too (it replaces the database under a running gateway's
feet otherwise), and `doctor` asks who holds it.

flock() locks belong to the open file description: the kernel drops them
when the process dies however it dies (kill -9, power cut), so a stale lock
file never blocks the next start. The pid written into the file is only
there to be named in the refusal; the lock itself is the truth.
"""
import errno
import fcntl
import os

LOCK_NAME = "huaico.lock"


class LockedError(RuntimeError):
    """Another process holds the data directory (pid may be None if unknown)."""

    def __init__(self, path, pid):
        self.path = path
        self.pid = pid
        who = "pid %d" % pid if pid else "another process"
        RuntimeError.__init__(
            self, "another huaico gateway (%s) is running on %s; stop it first"
                  % (who, path.parent))


def lock_path(home):
    return home / LOCK_NAME


def _read_pid(fd):
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class DataDirLock:
    """Held from acquire() to release(); a context manager as well."""

    def __init__(self, home):
        self.path = lock_path(home)
        self.fd = None

    def acquire(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockedError(self.path, pid) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d\n" % os.getpid(), 0)
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            # Emptied, not removed: unlinking a lock file races with a
            # second process that has just opened the old inode.
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def holder(home):
    """The pid of the gateway running on `home` (0 if its pid is unknown),
    or None when none runs. Probes with a shared lock held for microseconds:
    it never blocks, and a gateway starting in that instant is refused with
    a message it can be retried on."""
    path = lock_path(home)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return _read_pid(fd) or 0
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
