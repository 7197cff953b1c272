"""The generator protocol: every video backend (geometric, diffusion) answers the same request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from worldstereo.cameras import Trajectory
from worldstereo.memory.bank import MemoryBank
from worldstereo.memory.cache import PointCache
from worldstereo.memory.retrieval import Reference


@dataclass
class GenerationRequest:
    """What a backend is conditioned on for one trajectory."""

    trajectory: Trajectory
    cache: PointCache  # the 3D cache before this trajectory (coarse geometry)
    bank: MemoryBank  # remembered views; use only entries with step < `step`
    references: list[Reference]  # one per target frame
    step: int  # plan position of this trajectory (0 = input)
    pivot_depth: float
    cond_rgb: np.ndarray  # [N, H, W, 3] uint8 cache render along the path
    cond_hole: np.ndarray  # [N, H, W] bool, True where the cache has nothing
    observed: tuple | None = None  # (Camera, depth_m) of the input view, or (EquirectCamera, distance_m) of a
    # panorama: free space nothing may fill (memory.cache.violates_free_space)


@dataclass
class GeneratedFrames:
    """A backend's answer. depth / conf are None for backends that only make pixels."""

    rgb: np.ndarray  # [N, H, W, 3] uint8
    depth: np.ndarray | None  # [N, H, W] float32 metres
    conf: np.ndarray | None  # [N, H, W] float32 in 0..1
    backend: str
    notes: str = ""


class Generator(Protocol):
    name: str

    def generate(self, req: GenerationRequest, progress_desc: str = "") -> GeneratedFrames: ...
