"""Atomic file output: every file convexop writes appears complete or not at all.

`atomic_output(path)` yields a fresh temporary name beside `path`; when the block ends normally the
file is fsynced and renamed over `path`, and on any error (or interrupt) the temporary is removed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """A fresh `.NAME.PID-XXXX.tmp` beside `path` (not created: the writer creates it, with the usual
    permissions); renamed over `path` once complete. The pid tells a dead writer's leftovers."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (this one counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:  # exists, owned by someone else
        return True
    except (ProcessLookupError, OverflowError, ValueError, OSError):
        return False
    return True


def remove_stale_temporaries(folder: Path, name: str = "*", unowned: bool = False) -> int:
    """Delete the `.NAME.PID-XXXX.tmp` files of `name` in `folder` whose writer is dead (a process killed
    mid-write); never those of a live process. `unowned`: also those without a pid (older versions'
    names; for folders this process holds locked). Returns how many were removed."""
    removed = 0
    try:
        candidates = list(Path(folder).glob(f".{name}.*.tmp"))
    except (OSError, ValueError):
        return 0
    for path in candidates:
        pid_text = path.name[:-len(".tmp")].rsplit(".", 1)[-1].split("-", 1)[0]
        if (not process_alive(int(pid_text))) if pid_text.isdigit() else unowned:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success fsync it and rename it over `path`."""
    path = Path(path)
    remove_stale_temporaries(path.parent, path.name)
    tmp = temporary_path(path)
    try:
        yield tmp
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_output(path) as tmp, open(tmp, "xb") as stream:
        stream.write(data)


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks (bounded memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
