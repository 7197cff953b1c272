"""User-facing errors: one line naming the file and the problem, exit code 2."""

from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path
from typing import Callable, TypeVar

EXIT_BAD_INPUT = 2
# OSErrors that say something about the user's disk or folders rather than a bug: one line, exit 2
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                      errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}

F = TypeVar("F", bound=Callable)


class InputError(Exception):
    """Bad input the user can fix. Printed as `error: <path>: <problem>` without a traceback."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem


def cli_entry(main: F) -> F:
    """Wrap a script's main so InputError (and an OSError of the user's disk or folders) becomes one
    line on stderr and exit code 2; Ctrl-C says how to resume and exits 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except InputError as e:
            print(f"error: {e.one_line()}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        except OSError as e:
            if e.errno not in ENVIRONMENT_ERRNOS:
                raise
            # disk full, read-only or forbidden folder: the write was atomic, so nothing half-written stays
            print(f"error: {e.filename or ''}: {e.strerror or e}".replace("error: : ", "error: "), file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            print("interrupted: finished outputs are kept; rerun the same command to resume", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
