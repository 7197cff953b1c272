"""Atomic file and folder writes: write to a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else by set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _default_mode(path: Path, is_dir: bool) -> None:
    """mkstemp / mkdtemp create 0600 / 0700, kept through the rename: give the mode open()/mkdir()
    would have given, so a scene shared with a group on a cluster stays readable to it."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~current_umask())


def _name(e: OSError, path: Path) -> None:
    """A write error (disk full, file too large) carries no file name: name the file being written."""
    if e.filename is None or str(e.filename).split("/")[-1].startswith(".tmp-"):
        e.filename = str(path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto `path`.

    A crash or Ctrl-C leaves at most a `.tmp-*` file that nothing reads, never a half-written
    `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _default_mode(tmp, is_dir=False)
        os.replace(tmp, path)
    except OSError as e:
        _name(e, path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_save(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp_path)` and rename the result onto `path`."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy a file's bytes onto `dst` atomically."""
    atomic_save(dst, lambda tmp: shutil.copyfile(src, tmp))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name, then swap it in place of `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    try:
        yield tmp
        _default_mode(tmp, is_dir=True)
        old = None
        if path.exists():
            old = path.parent / f".old-{path.name}-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        _name(e, path)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def clean_stale_temps(folder: str | Path) -> int:
    """Remove `.tmp-*` / `.old-*` leftovers of interrupted writes below `folder`. Returns a count.
    Call it only while holding the scene's lock: another writer's temporaries are not stale."""
    n = 0
    for pattern in (".tmp-*", ".old-*"):
        for p in Path(folder).rglob(pattern):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n
