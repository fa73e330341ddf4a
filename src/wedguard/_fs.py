"""Files and directories nobody else controls.

The run directory of the ``wedguard`` command, the status files in it and the stop
file are switches: whoever can write them can stop a backup, make a privileged
``wedguard stop`` write where it should not, or answer for a guard. This module holds
the checks and the careful file operations they need:

* :func:`private_dir`: a directory owned by this user with no access for group or
  others (mode 0700), created so when missing (and its missing parents too), refused
  with a :class:`~wedguard.ConfigError` naming the path otherwise. A symbolic link is
  refused, and so is a path through a directory that someone else may change.
* :func:`path_problem`: the rules of sshd's ``StrictModes`` for a directory and every
  directory above it: owned by this user or root, and not writable by group or others
  unless the sticky bit is set (as on ``/tmp``), where others cannot rename or remove
  our entries.
* :func:`write_file`: an atomic write into a checked directory that never follows a
  symbolic link: a temporary file with a random name created with ``O_EXCL``
  (nothing can be planted under it) and mode 0600, then a rename over the target (a
  link planted at the target is replaced, never written through).
* :class:`StopFile`: the stop-file test the guard runs every ``stop_check_interval``:
  a file that someone else owns, or that lies in a directory someone else controls,
  does not count.

On a platform without user ids (``os.geteuid``), the ownership checks pass.

>>> import os, tempfile
>>> from pathlib import Path
>>> base = Path(tempfile.mkdtemp())
>>> private_dir(base / "run", create=True)
True
>>> oct(os.stat(base / "run").st_mode & 0o777)
'0o700'
>>> write_file(base / "run", "status.json", b"{}", private=True)
>>> oct(os.stat(base / "run" / "status.json").st_mode & 0o777)
'0o600'
>>> StopFile(base / "run" / "stop").present()
False
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from wedguard.errors import ConfigError

__all__ = [
    "StopFile",
    "check_stop_location",
    "euid",
    "fsync_dir",
    "no_follow",
    "open_dir",
    "owner",
    "path_problem",
    "private_dir",
    "private_problem",
    "read_file",
    "stop_file_problem",
    "write_file",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIR_FD = os.open in os.supports_dir_fd and os.rename in os.supports_dir_fd  # os.replace too


def euid() -> int | None:
    """This process's effective user id (None where there are no user ids)."""
    get = getattr(os, "geteuid", None)
    return None if get is None else int(get())


def owner(uid: int | None) -> str:
    """``uid 65534 (nobody)``: a user id with its name when it has one.

    >>> owner(0)
    'uid 0 (root)'
    """
    if uid is None:
        return "this user"
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _trusted(uid: int, me: int) -> bool:
    return uid == me or uid == 0


def private_problem(path: str | os.PathLike[str], st: os.stat_result, me: int | None) -> str:
    """Why ``st`` (an ``lstat`` of ``path``) is not a private directory of user ``me``;
    empty when it is one.

    >>> import os
    >>> st = os.stat_result((0o40755, 1, 1, 2, 1000, 1000, 4096, 0, 0, 0))
    >>> private_problem("/tmp/wedguard-1000", st, 1000)
    '/tmp/wedguard-1000 has mode 0755: group and others may use it'
    >>> private_problem("/tmp/wedguard-1000", st, 0)
    '/tmp/wedguard-1000 is owned by uid 1000..., not by you (uid 0 (root))'
    """
    where = os.fspath(path)
    if stat.S_ISLNK(st.st_mode):
        return f"{where} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"{where} is not a directory"
    if me is None:
        return ""
    if st.st_uid != me:
        return f"{where} is owned by {owner(st.st_uid)}, not by you ({owner(me)})"
    if st.st_mode & 0o077:
        return f"{where} has mode {stat.S_IMODE(st.st_mode):04o}: group and others may use it"
    return ""


def _dir_problem(where: str, st: os.stat_result, me: int) -> str:
    """sshd StrictModes for one entry on the way to a file ('' when it passes)."""
    if not _trusted(st.st_uid, me):
        return f"{where} is owned by {owner(st.st_uid)}, not by you ({owner(me)}) or root"
    if stat.S_ISLNK(st.st_mode):
        return ""  # its target is checked on the resolved path
    if not stat.S_ISDIR(st.st_mode):
        return f"{where} is not a directory"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else (
            "its group" if st.st_mode & 0o020 else "others"
        )  # fmt: skip
        return (
            f"{where} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}) "
            "without the sticky bit"
        )
    return ""


def _chain(directory: str) -> Iterator[str]:
    """Every directory from the root down to ``directory``, as given and as resolved."""
    seen: set[str] = set()
    for top in (os.path.abspath(directory), os.path.realpath(directory)):
        path = Path(top)
        for p in (*reversed(path.parents), path):
            text = os.fspath(p)
            if text not in seen:
                seen.add(text)
                yield text


def path_problem(directory: str | os.PathLike[str], me: int | None = None) -> str:
    """Why someone other than this user (or root) could change ``directory``: the rules
    of sshd's StrictModes applied to it and every directory above it; empty when
    nobody else can.

    Every directory on the way (and every symbolic link) must be owned by this user or
    root, and no directory may be writable by group or others unless it has the sticky
    bit (``/tmp``: others may add entries but not rename or remove ours).

    Raises:
        FileNotFoundError: a directory on the way is missing (``filename`` names it).

    >>> path_problem("/")
    ''
    """
    me = euid() if me is None else me
    if me is None:
        return ""
    for where in _chain(os.fspath(directory)):
        problem = _dir_problem(where, os.lstat(where), me)
        if problem:
            return problem
    return ""


def private_dir(
    path: str | os.PathLike[str], *, create: bool, field: str = "run directory"
) -> bool:
    """Make sure ``path`` is a directory that only this user controls.

    With ``create``, a missing directory (and each missing parent) is created with
    mode 0700. An existing one must be owned by this user, not a symbolic link and
    not open to group or others, and the directories above it must pass
    :func:`path_problem`.

    Returns:
        True when the directory is there (and private); False when it is missing and
        ``create`` is false.

    Raises:
        ConfigError: the directory, or one above it, is not ours alone (``field``
            names what it is for, the message names the path and why).
        OSError: it could not be created.
    """
    target = Path(os.path.abspath(path))
    me = euid()
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        if not create:
            return False
        _create(target, field)
        st = os.lstat(target)
    problem = private_problem(target, st, me)
    if not problem:
        problem = path_problem(target.parent, me)
    if problem:
        raise ConfigError(field, os.fspath(target), _private_expectation(me, problem))
    return True


def _private_expectation(me: int | None, problem: str) -> str:
    return (
        f"a directory that only you control (owned by {owner(me)}, mode 0700, in directories "
        f"nobody else may change): {problem}; remove it, or choose another directory "
        "(WEDGUARD_RUN_DIR)"
    )


def _create(target: Path, field: str) -> None:
    """Create ``target`` and its missing parents, each mode 0700."""
    missing = [target]
    for parent in target.parents:
        if os.path.lexists(parent):
            break
        missing.append(parent)
    top = missing[-1].parent
    problem = path_problem(top)
    if problem:
        raise ConfigError(field, os.fspath(target), _private_expectation(euid(), problem))
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # raced: checked by the caller
            os.mkdir(d, 0o700)


def open_dir(path: str | os.PathLike[str], *, private: bool, field: str = "run directory") -> int:
    """Open the directory ``path`` (a file descriptor) and check what was opened.

    ``private``: the directory itself must be ours alone (see :func:`private_dir`;
    opened without following a symbolic link). Otherwise the StrictModes rules of
    :func:`path_problem` hold. The caller closes the descriptor.

    Raises:
        ConfigError: the opened directory fails the check.
        OSError: it cannot be opened (``FileNotFoundError`` when missing).
    """
    where = os.fspath(path)
    flags = os.O_RDONLY | _DIRECTORY | _CLOEXEC | (_NOFOLLOW if private else 0)
    if not private:
        problem = path_problem(where)
        if problem:
            raise ConfigError(field, where, _strict_expectation(problem))
    try:
        fd = os.open(where, flags)
    except OSError as exc:
        if private and os.path.islink(where):
            raise ConfigError(
                field, where, _private_expectation(euid(), f"{where} is a symbolic link")
            ) from exc
        raise
    try:
        st = os.fstat(fd)
        me = euid()
        if private:
            problem = private_problem(where, st, me)
            if problem:
                raise ConfigError(field, where, _private_expectation(me, problem))
        elif me is not None:
            problem = _dir_problem(where, st, me)
            if problem:
                raise ConfigError(field, where, _strict_expectation(problem))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _strict_expectation(problem: str) -> str:
    return (
        "a place only you or root can change (owned by you or root, not writable by group "
        f"or others unless sticky, like /tmp): {problem}"
    )


def write_file(
    directory: str | os.PathLike[str],
    name: str,
    data: bytes,
    *,
    private: bool,
    field: str = "run directory",
) -> None:
    """Write ``data`` to ``directory/name`` atomically, mode 0600, following no link.

    The data goes to a temporary file with a random name, created exclusively
    (``O_CREAT | O_EXCL | O_NOFOLLOW``) in the opened and checked directory, which
    then replaces ``name``: a symbolic link planted at ``name`` is replaced, never
    written through. ``private`` chooses the check of the directory
    (:func:`open_dir`).
    """
    fd = open_dir(directory, private=private, field=field)
    try:
        _write_at(fd, os.fspath(directory), name, data)
    finally:
        os.close(fd)


def _write_at(fd: int, directory: str, name: str, data: bytes) -> None:
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    if _DIR_FD:
        out = os.open(tmp, flags, 0o600, dir_fd=fd)
    else:  # pragma: no cover - no dir_fd support (not POSIX)
        out = os.open(os.path.join(directory, tmp), flags, 0o600)
    try:
        with os.fdopen(out, "wb") as f:
            f.write(data)
        if _DIR_FD:
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        else:  # pragma: no cover
            os.replace(os.path.join(directory, tmp), os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            if _DIR_FD:
                os.unlink(tmp, dir_fd=fd)
            else:  # pragma: no cover
                os.unlink(os.path.join(directory, tmp))
        raise


def read_file(
    name: str | os.PathLike[str], *, dir_fd: int | None = None, limit: int = 1 << 20
) -> bytes:
    """Read a regular file (at most ``limit`` bytes) without following a symbolic
    link or blocking on a FIFO; owned by this user or root.

    Raises:
        OSError: missing, a link, not a regular file, or someone else's.
    """
    flags = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK
    fd = os.open(name, flags) if dir_fd is None else os.open(name, flags, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        me = euid()
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{os.fspath(name)} is not a regular file")
        if me is not None and not _trusted(st.st_uid, me):
            raise PermissionError(f"{os.fspath(name)} is owned by {owner(st.st_uid)}")
        return f.read(limit)


def stop_file_problem(path: str, st: os.stat_result, me: int | None) -> str:
    """Why an existing stop file (``st`` from ``lstat``) does not count: someone other
    than this user or root owns it. Empty when it counts.

    Only the owner matters, not the permission bits: the file's existence is the
    signal, and nobody but its owner (or root) can create it.

    >>> import os
    >>> st = os.stat_result((0o100644, 1, 1, 1, 65534, 65534, 0, 0, 0, 0))
    >>> stop_file_problem("/tmp/wg.stop", st, 1000)
    'stop file /tmp/wg.stop is owned by uid 65534..., not by you (uid 1000...) or root'
    >>> stop_file_problem("/tmp/wg.stop", st, 65534)
    ''
    """
    if me is None or _trusted(st.st_uid, me):
        return ""
    return f"stop file {path} is owned by {owner(st.st_uid)}, not by you ({owner(me)}) or root"


def check_stop_location(path: str | os.PathLike[str], *, field: str = "stop_file") -> str:
    """Check where a stop file lives, at construction time.

    The directory of ``path`` and every directory above it must pass
    :func:`path_problem`: otherwise someone else could create, replace or remove the
    stop file. A directory that does not exist yet passes (it is checked when a stop
    file appears in it).

    Returns:
        The missing directory (the first one on the way) or ``""``.

    Raises:
        ConfigError: someone else controls the directory (the message says who and
            which directory).
    """
    where = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(where))
    try:
        problem = path_problem(directory)
    except FileNotFoundError as exc:
        return os.fspath(exc.filename or directory)
    if problem:
        raise ConfigError(field, where, _strict_expectation(problem))
    return ""


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in directory ``path`` durable (fsync the directory);
    quietly nothing where directories cannot be opened or synced."""
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse it
        pass
    finally:
        os.close(fd)


class StopFile:
    """The stop-file test: does ``path`` exist, and is it a stop file we trust?

    :meth:`present` costs one ``lstat`` while the file is absent, and two while it is
    there (the file and its directory). A file that someone other than this user or
    root owns, or one in a directory that someone else controls (checked again when
    the directory changes), is not a stop: :attr:`problem` then says why, for the
    caller to log and report.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> f = StopFile(os.path.join(d, "stop"))
    >>> f.present()
    False
    >>> open(os.path.join(d, "stop"), "w").close()
    >>> f.present(), f.problem
    (True, '')
    """

    __slots__ = ("_directory", "_path", "_verified", "problem")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._directory = os.path.dirname(os.path.abspath(self._path))
        self._verified: tuple[int, int, int, int] | None = None
        self.problem = ""

    @property
    def path(self) -> str:
        return self._path

    def present(self) -> bool:
        """True when the stop file exists and is to be obeyed."""
        try:
            st = os.lstat(self._path)
        except (OSError, ValueError):
            self.problem = ""
            return False
        me = euid()
        problem = stop_file_problem(self._path, st, me)
        if not problem and me is not None:
            problem = self._directory_problem(me)
        self.problem = problem
        return not problem

    def _directory_problem(self, me: int) -> str:
        try:
            st = os.lstat(self._directory)
            key = (st.st_dev, st.st_ino, st.st_uid, st.st_mode)
            if key == self._verified:
                return ""
            problem = path_problem(self._directory, me)
        except OSError as exc:
            return f"stop file {self._path}: its directory cannot be checked ({exc})"
        if problem:
            return f"stop file {self._path} lies where someone else can change it: {problem}"
        self._verified = key
        return ""


def no_follow(path: str, flags: int) -> int:
    """``open()``'s opener that follows no link at ``path`` (``ELOOP`` instead) and
    creates files as ``open()`` does (mode 0666 less the umask)."""
    return os.open(path, flags | _NOFOLLOW | _CLOEXEC, 0o666)


def replace_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file beside it with a random
    name, created exclusively (a name planted in advance is never written through),
    renamed over it."""
    target = os.fspath(path)
    tmp = os.path.join(
        os.path.dirname(target), f".{os.path.basename(target)}.{secrets.token_hex(8)}.tmp"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of ``path`` (UTF-8)."""
    with open(path, encoding="utf-8") as f:
        return f.read()
