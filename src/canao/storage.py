"""Writing files and directories so that a crash never leaves a half-written one in place, and nothing of the
user's is lost.

Files are written to a temp file beside the target and renamed over it; a
directory is built in a temp directory and swapped in (an existing target is
moved aside first and deleted after the swap). Before a tool writes a
directory it calls `prepare_target`, which refuses to replace a directory
that holds anything the tool did not write (or, with force, moves it aside:
never deletes it). Used by checkpoints, artifacts, device profiles and the
tuning database.

Example::

    write_json_atomically(Path("profile.json"), data)
    prepare_target(Path("art"), is_ours=artifact_foreign_files, force=False)
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import inspect
import json
import logging
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar, cast

from canao.errors import CanaoError

F = TypeVar("F", bound=Callable[..., Any])
SHARED_FILE_MODE = 0o644  # what canao writes is meant to be read by others (artifacts, packages, checkpoints)
SHARED_DIR_MODE = 0o755


def cache_root() -> Path:
    """Where canao keeps what it can rebuild (bundled artifacts, device profiles): $CANAO_CACHE_DIR or
    ~/.cache/canao."""
    base = os.environ.get("CANAO_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "canao"


class ExistingDirectoryError(CanaoError, FileExistsError):
    """The output directory exists and holds files this tool did not write."""


def read_user_text(path: Path | str, what: str, error: type[Exception], encoding: str = "utf-8") -> str:
    """A text file a user named, or `error` with a one-line message naming the file and what is wrong.

    A name ending in .gz is read through gzip (data sets ship compressed)."""
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding=encoding) as f:
                return f.read()
        return path.read_text(encoding=encoding)
    except (EOFError, zlib.error) as err:
        raise error(f"{path}: the gzip stream is truncated or damaged ({err}); pass {what}.") from None
    except FileNotFoundError:
        raise error(f"{path}: file not found; pass {what}.") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory; pass {what}.") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: is not UTF-8 text ({err.reason} at byte {err.start}); pass {what}.") from None
    except OSError as err:  # gzip.BadGzipFile is an OSError
        raise error(f"{path}: cannot be read ({err.strerror or err}).") from None


def read_user_json_object(path: Path | str, what: str, error: type[Exception]) -> dict[str, Any]:
    """A JSON object file a user named, or `error` naming the file: unreadable, not JSON, or not an object."""
    text = read_user_text(path, what, error)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise error(f"{path}: does not parse as JSON ({type(err).__name__}: {err}).") from None
    if not isinstance(data, dict):
        raise error(f"{path}: must hold a JSON object; pass {what}.")
    return data


def write_json_atomically(path: Path, data: Any, indent: int = 1) -> None:
    write_text_atomically(path, json.dumps(data, indent=indent))


def write_text_atomically(path: Path, text: str) -> None:
    """`path` holds the whole of `text` or what it held before, never a part (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, SHARED_FILE_MODE)  # mkstemp makes it private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_directory(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing target is swapped out first and deleted after. A symlink at `target`
    is removed, never followed: what it points to is left alone."""
    if target.is_symlink():
        target.unlink()
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def set_aside(path: Path) -> Path:
    """Rename `path` to the first free `<name>.old-<n>` beside it and return the new name."""
    for n in range(1, 10_000):
        aside = path.with_name(f"{path.name}.old-{n}")
        if not aside.exists():
            os.replace(path, aside)
            return aside
    raise ExistingDirectoryError(f"{path}: too many set-aside copies beside it; clean them up.")


def prepare_target(path: Path, *, is_ours: Callable[[Path], Optional[list[Path]]], force: bool) -> None:
    """Make sure writing a tool's directory at `path` loses nothing of the user's.

    `is_ours(path)` returns the entries of an existing directory the tool did
    not write, or None if the directory is not the tool's at all. A missing or
    empty target, or one of the tool's holding only its own files, may be
    replaced; anything else is refused, or with `force` moved aside."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExistingDirectoryError(f"{path.parent}: cannot create the output's parent directory ({err}).") from err
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        foreign: Optional[list[Path]] = None
    elif not any(path.iterdir()):
        return
    else:
        foreign = is_ours(path)
        if foreign == []:
            return
    what = (
        "is not a directory canao wrote"
        if foreign is None
        else f"holds files canao did not write ({', '.join(p.name for p in foreign[:5])})"
    )
    if not force:
        raise ExistingDirectoryError(
            f"{path} {what}; choose another output path, or pass --force to move it "
            "aside (it is renamed, never deleted)."
        )
    aside = set_aside(path)
    logging.getLogger(__name__).warning("%s %s; moved it to %s.", path, what, aside)


class RunBusyError(CanaoError, RuntimeError):
    """Another live process holds the run directory (or output file) this one was asked to write."""


LOCK_FILE = ".canao.lock"
_held: dict[Path, int] = {}  # lock files this process holds, with how many holders (the lock is re-entrant)


@contextlib.contextmanager
def exclusive(target: Path, what: str = "run directory", *, is_file: bool = False) -> Iterator[None]:
    """One process at a time for `target`: a directory (locked through target/.canao.lock) or, with `is_file`,
    an output file (locked through .<name>.lock beside it).

    The lock is the kernel's (flock on the lock file), so a process that dies, even by kill -9, releases it;
    the file keeps the owner's pid, host and command line for the message another process gets, and a record
    left by a dead process is taken over with a log line naming it. Re-entrant within a process (a stage that
    locks the directory its caller already holds)."""
    target = Path(target)
    lock = target.with_name(f".{target.name}.lock") if is_file else target / LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    key = lock.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd = _acquire(lock, target, what)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            lock.unlink()  # while still locked: a later process locks a fresh file, never this one
        os.close(fd)


def exclusive_per(
    argument: str, what: str, path_of: Callable[[Any], Any] = lambda value: value, *, is_file: bool = False
) -> Callable[[F], F]:
    """Run the decorated function under `exclusive` on the path that its parameter `argument` gives (through
    `path_of`, e.g. a config's output directory): one process at a time per run, without a wrapper that
    repeats the function's signature."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args: Any, **kwargs: Any) -> Any:
            value = signature.bind(*args, **kwargs).arguments[argument]
            with exclusive(Path(path_of(value)), what, is_file=is_file):
                return fn(*args, **kwargs)

        return cast(F, locked)

    return decorate


def _acquire(lock: Path, target: Path, what: str) -> int:
    """An open, flock-ed descriptor of `lock` that is still the file at that path (it may have been unlinked
    by a releasing owner between our open and our flock: then try again on the new file)."""
    import fcntl
    import socket
    import sys

    for _ in range(5):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise RunBusyError(
                f"{target}: another canao process ({owner}) is using this {what}; wait for it to finish or stop "
                "it, or pass another output path."
            ) from None
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    else:
        raise RunBusyError(f"{target}: its lock keeps changing hands; run the command again.")
    previous = _read_owner(fd)
    if previous != "unknown owner":
        logging.getLogger(__name__).warning(
            "%s: taking over the lock left by %s (no longer running).", target, previous
        )
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return fd


def _read_owner(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        return f"pid {int(data['pid'])} on {data['host']}: {data['command']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "unknown owner"


class OutputPathError(CanaoError, OSError):
    """An output path the user gave cannot be written (checked before the work that would fill it)."""


def check_output_path(path: Path | str, what: str, *, directory: bool = False) -> None:
    """Fail now, in one line, if `path` (a file, or with `directory` a directory) could not be written later:
    it is the wrong kind of thing, or nothing can be created where it would go (a read-only place, a missing
    permission). Nothing is left behind: the check writes and removes a probe file in the nearest existing
    directory."""
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: exists and is not a directory; pass a directory for {what}.")
    if not directory and path.is_dir():
        raise OutputPathError(f"{path}: is a directory; pass a file path for {what}.")
    place = path if directory and path.is_dir() else path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise OutputPathError(f"{path}: {place} is not a directory; pass another path for {what}.")
    try:
        fd, probe = tempfile.mkstemp(dir=place, prefix=".canao-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputPathError(
            f"{path}: cannot be written in {place} ({err.strerror or err}); pass another path for {what}."
        ) from None
    if not directory and path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{path}: exists and is read-only; pass another path for {what}.")


def temp_directory(parent: Path, prefix: str) -> Path:
    """A new directory in `parent` to build an output in before it is renamed into place; mode 0755, not the
    0700 that mkdtemp gives (the output is meant to be shared)."""
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(tmp, SHARED_DIR_MODE)
    return tmp


def share_file(path: Path) -> None:
    """Give a file written by a library that makes it private (safetensors: 0600) the mode of canao's others."""
    os.chmod(path, SHARED_FILE_MODE)
