"""Atomic publish of a folder, and the locks that serialise saves and loads.

Atomic save
-----------
:func:`publish` has a ``build`` callback fill a fresh temporary folder
``.<name>.softdb-tmp-<pid>-<random>`` next to the target (same file system),
fsyncs the folder, and then swaps it in. A rename cannot replace a non-empty
folder, so overwriting takes two renames, each followed by an fsync of the
parent folder:

1. rename the current table ``<name>`` aside to ``.<name>.softdb-old``;
2. rename the temporary folder to ``<name>``;
3. delete ``.<name>.softdb-old``.

Every folder that ever carries the name ``<name>`` or ``.<name>.softdb-old``
is complete, so the state on disk after a crash at any moment reads as:

- ``<name>`` exists: it is the table (the new one after step 2, else the old
  one); an ``.softdb-old`` folder beside it is garbage;
- ``<name>`` is missing but ``.<name>.softdb-old`` exists: the process died
  between steps 1 and 2, and the aside copy *is* the table (the old one).

:func:`reading` follows these two rules, and the next save finishes or
discards whatever a killed save left behind, including temporary folders.
Saves and loads of tables in one parent folder are serialised by an advisory
``flock`` on that folder (exclusive to save, shared to load), so a load in
another thread or process never sees the in-between state of a live save.

Limits: the lock is POSIX ``flock`` (absent on Windows, unreliable on some
network file systems), so there concurrent saves to one path must be avoided.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator

from softdb.store import _manifest

__all__ = ["WRITER_LOCK", "check_not_writing", "check_path", "fsync_dir", "publish", "reading", "writing"]

_TMP = ".softdb-tmp-"
_OLD = ".softdb-old"


def _names(path: str | os.PathLike[str]) -> tuple[str, str, str]:
    """Return (target, parent, aside) as absolute paths."""
    target = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(target)
    if name in ("", ".", ".."):
        raise ValueError(f"path {os.fspath(path)!r} names no folder; hint: e.g. table.save('my_table')")
    return target, parent, os.path.join(parent, f".{name}{_OLD}")


def check_path(path: str | os.PathLike[str]) -> None:
    """Raise ValueError if ``path`` names no folder (so a bad path fails before any work)."""
    _names(path)


@contextlib.contextmanager
def _locked(parent: str, *, exclusive: bool) -> Iterator[None]:
    """Advisory flock on the parent folder (no-op where flock is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(parent, os.O_RDONLY)
    except FileNotFoundError:
        raise FileNotFoundError(f"folder {parent} does not exist; hint: create it first (os.makedirs)") from None
    except OSError:  # pragma: no cover - e.g. no read permission: go on unlocked
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync a folder, so the names in it (new files, renames) survive a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(build: Callable[[str], object], path: str | os.PathLike[str]) -> None:
    """Atomically make ``path`` the folder that ``build(tmp)`` fills (the save protocol above).

    ``build`` receives a fresh temporary folder next to ``path`` and must
    write everything into it; on any error the temporary folder is removed and
    ``path`` is untouched. An existing table (or sharded table) at ``path`` is replaced.
    """
    target, parent, aside = _names(path)
    with _locked(parent, exclusive=True):
        _publish_locked(build, target, parent, aside)


def _publish_locked(build: Callable[[str], object], target: str, parent: str, aside: str) -> None:
    """:func:`publish` with the parent folder's lock already held."""
    if os.path.lexists(target) and not os.path.isdir(target):
        raise ValueError(f"cannot save to {target}: it is a file, not a table folder")
    if (
        os.path.isdir(target)
        and os.listdir(target)
        and not (_is_table(target) or os.path.exists(os.path.join(target, "shards.json")))
    ):
        raise ValueError(
            f"cannot save to {target}: it is a non-empty folder that is not a softdb table, "
            "and saving would replace it; hint: choose a new path"
        )
    for stale in glob.glob(glob.escape(os.path.join(parent, f".{os.path.basename(target)}{_TMP}")) + "*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed save: we hold the lock
    tmp = os.path.join(parent, f".{os.path.basename(target)}{_TMP}{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(tmp)
    try:
        build(tmp)
        fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, target, parent, aside)


def _is_table(folder: str) -> bool:
    """A softdb table, or the damaged remains of one: safe for save to replace."""
    names = os.listdir(folder)
    if "manifest.json" not in names:
        return False
    if all(n == "manifest.json" or _manifest.FILE_NAME.match(n) for n in names):
        return True  # only table files (maybe a damaged manifest)
    try:
        with open(os.path.join(folder, "manifest.json"), "rb") as f:
            return b'"' + _manifest.FORMAT.encode() + b'"' in f.read(4096)
    except OSError:
        return False


def _swap_in(tmp: str, target: str, parent: str, aside: str) -> None:
    """Steps 1-3 of the module docstring; ``tmp`` is complete and synced."""
    if os.path.isdir(target):
        if os.path.lexists(aside):
            shutil.rmtree(aside)  # garbage from an earlier killed save: target is the table
        os.rename(target, aside)  # step 1
        fsync_dir(parent)
    try:
        os.rename(tmp, target)  # step 2
    except BaseException:
        if os.path.isdir(aside) and not os.path.lexists(target):
            os.rename(aside, target)  # roll back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(parent)
    shutil.rmtree(aside, ignore_errors=True)  # step 3 (or the old table a killed save left aside)


@contextlib.contextmanager
def reading(path: str | os.PathLike[str]) -> Iterator[str]:
    """Hold the shared lock of ``path``'s parent and yield the folder that is the table there.

    That is ``path`` itself or, when a save was killed between its two renames,
    the aside copy ``.<name>.softdb-old``.

    Raises
    ------
    FileNotFoundError
        Neither folder exists, or the parent folder does not.
    ValueError
        ``path`` is a file.
    """
    target, parent, aside = _names(path)
    with _locked(parent, exclusive=False):
        folder = target
        if not os.path.isdir(target):
            if os.path.lexists(target):
                raise ValueError(f"{target} is a file, not a table folder")
            if not os.path.isdir(aside):
                raise FileNotFoundError(f"no softdb table at {target}: the folder does not exist")
            folder = aside  # a save was killed between its two renames: this is the table
        yield folder


# ------------------------------------------------------------------ the writer lock
#: Lock file inside a table folder: held by whoever has the table open for writing.
WRITER_LOCK = ".softdb-writer.lock"
_held: dict[str, int] = {}  # table folder -> open fd, for locks this process holds
_held_lock = threading.Lock()


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the table folder ``path`` open for writing (an exclusive ``flock`` on a lock file in it).

    While one process (or one ``with`` block) holds it, :meth:`softdb.SoftTable.compact` of a
    table bound to that folder elsewhere is refused; this process's own tables may compact.
    The command line's writes (``softdb add``, ``remove``, ``compact``) hold it.

    Raises
    ------
    RuntimeError
        Another writer holds it.
    FileNotFoundError
        ``path`` is not a folder.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with writing(folder):
    ...     check_not_writing(folder)  # held by this process: allowed
    """
    import fcntl

    target = os.path.abspath(os.fspath(path))
    if not os.path.isdir(target):
        raise FileNotFoundError(f"no table folder at {target}; hint: save the table there first")
    fd = os.open(os.path.join(target, WRITER_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _busy(target) from None
    with _held_lock:
        _held[target] = fd
    try:
        yield
    finally:
        with _held_lock:
            _held.pop(target, None)
        os.close(fd)


def _busy(target: str) -> RuntimeError:
    return RuntimeError(
        f"the table folder {target} is open for writing elsewhere (another process or thread holds its "
        f"writer lock {WRITER_LOCK}), so it cannot be compacted now; hint: wait for that writer to finish, "
        "then try again"
    )


def check_not_writing(path: str | os.PathLike[str]) -> None:
    """Raise RuntimeError if another writer holds the table folder ``path`` open (see :func:`writing`)."""
    import fcntl

    target = os.path.abspath(os.fspath(path))
    with _held_lock:
        if target in _held:
            return  # this process holds it: its own writes may go on
    try:
        fd = os.open(os.path.join(target, WRITER_LOCK), os.O_RDONLY)
    except FileNotFoundError:
        return  # nobody ever held it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(target) from None
    finally:
        os.close(fd)
