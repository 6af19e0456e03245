"""Writing outputs: atomically, and to paths checked before any work is done.

Every file a tool writes appears under its final name only when complete: it is written to `NAME.tmp`
and renamed (`os.replace` is atomic on POSIX), so an interrupted run never leaves a half-written file
that a rerun or a recipe's stage skipping would take for a finished one.

Every output path is checked when a tool starts, before it loads a model or decodes a sentence:
a directory option naming an existing file, a file option naming a directory, or a parent that cannot
be created or written gets one line (FairseqKDError), instead of a traceback after the work.
"""
import os
from contextlib import contextmanager

from .errors import FairseqKDError


@contextmanager
def atomic_path(path: str):
    """Yields a temporary path beside `path`; renamed to `path` when the block completes, removed if it fails."""
    tmp = path + ".tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_lines(path: str, lines):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def _writable_dir(directory: str, option: str):
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:
        raise FairseqKDError(f"{option}: {directory} is a file, not a directory") from None
    except OSError as e:
        raise FairseqKDError(f"{option}: cannot create the directory {directory} ({e.strerror})") from None
    if not os.access(directory, os.W_OK):
        raise FairseqKDError(f"{option}: the directory {directory} is not writable")


def output_dir(path: str, option: str) -> str:
    """A directory the tool will write into: created if missing; refused if it is a file or not writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise FairseqKDError(f"{option}: {path} is a file, not a directory")
    _writable_dir(path, option)
    return path


def output_file(path: str, option: str) -> str:
    """A file the tool will write: refused if it is a directory; its parent created, and refused if not writable."""
    if os.path.isdir(path):
        raise FairseqKDError(f"{option}: {path} is a directory, not a file")
    _writable_dir(os.path.dirname(os.path.abspath(path)), option)
    return path
