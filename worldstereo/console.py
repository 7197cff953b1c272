"""One console helper for the whole tool: progress bars, warnings, the end-of-stage summary."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(it: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm bar on stderr; quiet when stderr is not a terminal except for the final line."""
    return iter(tqdm(it, desc=desc, total=total, leave=False, dynamic_ncols=True, file=sys.stderr,
                     disable=None if sys.stderr.isatty() else True))


def info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


class StageTimer:
    """Times a stage and prints its one-line summary: what, where, how long."""

    def __init__(self, stage: str):
        self.stage = stage
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def done(self, where: str, what: str = "") -> None:
        extra = f" — {what}" if what else ""
        print(f"[{self.stage}] done in {self.seconds:.1f}s → {where}{extra}", flush=True)

    def skipped(self, where: str) -> None:
        print(f"[{self.stage}] up to date (config unchanged) → {where}", flush=True)
