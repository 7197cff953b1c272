"""The memory bank (spatial-stereo memory): keyframes with image, depth and camera on disk."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_save, atomic_write_text
from worldstereo.io.images import read_image, write_image


@dataclass
class BankEntry:
    """One remembered view. `source` is "input" or a trajectory name; `step` its plan position."""

    id: int
    image: str  # relative to the bank folder
    depth: str
    c2w: list
    K: list
    width: int
    height: int
    source: str
    step: int
    frame: int

    @property
    def camera(self) -> Camera:
        return Camera(np.asarray(self.K, np.float64), np.asarray(self.c2w, np.float64), self.width, self.height)


class MemoryBank:
    """memory_bank/index.json + images/<id>.png + depth/<id>.npy."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.entries: list[BankEntry] = []
        if (self.root / "index.json").exists():
            try:
                self.entries = [BankEntry(**e) for e in json.loads((self.root / "index.json").read_text())]
            except (json.JSONDecodeError, TypeError) as e:
                raise InputError(self.root / "index.json", f"unreadable memory bank index ({e.__class__.__name__})")

    def add(self, rgb: np.ndarray, depth_m: np.ndarray, cam: Camera, source: str, step: int, frame: int) -> BankEntry:
        next_id = max((e.id for e in self.entries), default=-1) + 1
        entry = BankEntry(next_id, f"images/{next_id:05d}.png", f"depth/{next_id:05d}.npy", cam.c2w.tolist(),
                          cam.K.tolist(), cam.width, cam.height, source, step, frame)
        write_image(self.root / entry.image, rgb)
        atomic_save(self.root / entry.depth, lambda p: np.save(open(p, "wb"), depth_m.astype(np.float32)))
        self.entries.append(entry)
        return entry

    def drop_from_step(self, step: int) -> None:
        """Forget entries of plan step ≥ `step` (a trajectory is being redone)."""
        self.entries = [e for e in self.entries if e.step < step]

    def visible_before(self, step: int) -> list[BankEntry]:
        return [e for e in self.entries if e.step < step]

    def image(self, e: BankEntry) -> np.ndarray:
        return read_image(self.root / e.image)

    def depth(self, e: BankEntry) -> np.ndarray:
        return np.load(self.root / e.depth)

    def save(self) -> None:
        atomic_write_text(self.root / "index.json", json.dumps([asdict(e) for e in self.entries], indent=1))
