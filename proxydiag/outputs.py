"""Files proxydiag writes, made safe for a root process in a shared directory.

A name given with -o or -w is never opened as it stands: a link planted there (in /tmp,
say) would be followed and its target truncated. Each file is written as a new file beside
it, created by us alone, and renamed over the name; the rename replaces a link itself,
never what it points to. Captures are created 0600: they hold whatever crossed the wire,
credentials included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

PRIVATE = 0o600


class OutputError(Exception):
    """An output path proxydiag will not or cannot write: one line for the user."""


def check_writable(path: Path | str) -> None:
    """Before any work: the name can take a file (its directory exists and is writable, it
    is not a directory), so a long capture never ends in a lost report."""
    target = Path(path)
    parent = target.parent
    if is_stream(target):
        return
    if target.is_dir() and not target.is_symlink():
        raise OutputError(f"cannot write {target}: it is a directory")
    if not parent.is_dir():
        raise OutputError(f"cannot write {target}: no directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: the directory {parent} is not writable")


def refuse_inputs(outputs: Sequence[tuple[str, Path | str | None]], inputs: Iterable[Path | str | None]) -> None:
    """An output that names an input (or another output), directly or through a link, is refused
    before anything is read: it would replace the evidence. `outputs`: (option, path) pairs."""
    seen = [Path(path) for path in inputs if path is not None and str(path) != "-"]
    for option, path in outputs:
        if path is None:
            continue
        clash = next((other for other in seen if _same_file(Path(path), other)), None)
        if clash is not None:
            raise OutputError(f"{option} {path} would replace {clash}, which this command reads or writes: "
                              "name another file")
        seen.append(Path(path))


def _same_file(one: Path, other: Path) -> bool:
    if os.path.realpath(one) == os.path.realpath(other) or os.path.abspath(one) == os.path.abspath(other):
        return True
    with contextlib.suppress(OSError):
        if os.path.samefile(one, other):
            return True
    return False


def create_beside(path: Path | str, mode: int, buffering: int = -1) -> tuple[IO[bytes], str]:
    """A new file in `path`'s directory that no one else can have opened or linked, and its name."""
    directory, name = os.path.split(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    os.fchmod(descriptor, mode)
    return os.fdopen(descriptor, "wb", buffering=buffering), temporary


def is_stream(path: Path | str) -> bool:
    """A name for a stream, not a file to replace: /dev/stdout, /dev/null, a FIFO, a
    terminal. Written through as it is; renaming a file over it would replace the device."""
    text = str(path)
    if text.startswith("/dev/") or os.path.realpath(text).startswith(("/proc/", "/dev/")):
        return True
    try:
        mode = os.stat(text).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def write_replacing(path: Path | str, pieces: Iterable[str], mode: int | None = None) -> None:
    """The text, piece by piece, into a new file renamed over `path` once complete. `mode`:
    the new file's permissions (default: what the umask gives an ordinary new file). A
    stream (is_stream) is written as it is."""
    if is_stream(path):
        with open(path, "wb") as stream:
            for piece in pieces:
                stream.write(piece.encode("utf-8", "replace"))
        return
    handle, temporary = create_beside(path, _ordinary_mode() if mode is None else mode)
    try:
        with handle:
            for piece in pieces:
                handle.write(piece.encode("utf-8", "replace"))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def open_replacing(path: Path | str, mode: int = PRIVATE, buffering: int = -1) -> IO[bytes]:
    """A file to stream into (a capture being written): created new beside `path` and renamed
    over it at once, so readers see it grow; a link at `path` is replaced, not followed. A
    stream (is_stream) is opened as it is."""
    if is_stream(path):
        return open(path, "wb", buffering=buffering)  # noqa: SIM115 (the caller closes it)
    handle, temporary = create_beside(path, mode, buffering)
    try:
        os.replace(temporary, path)
    except BaseException:
        handle.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return handle


def open_appending(path: Path | str) -> IO[str]:
    """A log-like file to append to (sniff's jsonl events): never through a link, never a
    device or a pipe someone left at the name."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                             _ordinary_mode())
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "it is a symbolic link (proxydiag does not write through links)") from None
        raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(f"{path} is not a regular file")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "a", encoding="utf-8")


def _ordinary_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask
