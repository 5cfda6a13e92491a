"""What a configuration may include: regular files only, so many of them, so many bytes.

A file that another one names (nginx's `include`, globs too) is read only when it is a
regular file: a FIFO or `/dev/stdin` would wait for a writer forever, a device would never
end. The files and bytes read through includes are counted against one budget per
configuration, so an absolute glob (`include /etc/*;`) or a chain of files cannot make a
check read without end. Every refusal is an OSError whose message is one line for the user.
"""

from __future__ import annotations

import errno
import os
import stat

from proxydiag.parsers.userinput import CONFIG_READ_LIMIT, read_text_bounded

MAX_INCLUDED_FILES = 256  # a configuration split over more files than this is not one proxydiag reads
MAX_INCLUDED_BYTES = CONFIG_READ_LIMIT  # all the files of one configuration together
KERNEL_FILES = ("/proc/", "/sys/", "/dev/")
USER_FILES_UNDER_DEV = ("/dev/shm/",)  # a tmpfs of ordinary files: configurations may live there


class IncludeGuard:
    """The budget of one configuration's reads: each file checked, counted and read bounded."""

    def __init__(self, max_files: int = MAX_INCLUDED_FILES, max_bytes: int = MAX_INCLUDED_BYTES) -> None:
        self.max_files, self.max_bytes = max_files, max_bytes
        self.files = 0
        self.bytes = 0

    def check(self, path: str) -> None:
        """Raises OSError unless `path` is a regular file (after links): never opened otherwise."""
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"include {path}: not a regular file ({_kind(mode)}); only files are read")
        real = os.path.realpath(path)
        if real.startswith(KERNEL_FILES) and not real.startswith(USER_FILES_UNDER_DEV):  # /proc/self/environ is "regular" too
            raise OSError(errno.EINVAL, f"include {path}: a file of the kernel's, not a configuration")

    def read(self, path: str) -> str:
        """The text of one more file of the configuration, within the budget."""
        self.check(path)
        self.files += 1
        if self.files > self.max_files:
            raise OSError(errno.EMFILE, f"include {path}: more than {self.max_files} files included")
        left = self.max_bytes - self.bytes
        try:
            text = read_text_bounded(path, left)
        except OSError as error:
            if error.errno == errno.EFBIG:
                raise OSError(errno.EFBIG, f"include {path}: the included files hold more than "
                              f"{self.max_bytes >> 20} MiB together") from None
            raise
        self.bytes += len(text.encode("utf-8", "replace"))
        return text


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"
