"""The model that frames are aligned to: a confidence-weighted voxel merge of aligned points
(per voxel the weighted mean position, colour and normal, not append-all). A frame's contribution
is kept so it can be subtracted again (global_opt.py re-solves a frame against all the others).

>>> model = VoxelModel(voxel=0.01)
>>> c = model.contribution(X, rgb, normal, conf)   # X [N, 3] world, rgb [N, 3], normal [N, 3], conf [N]
>>> model.add(c, frame_index=0); xyz, rgb, normal, weight = model.arrays()
>>> model.remove(c)                                 # back to the model without that frame
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from worldstereo.geometry import voxel_keys


@dataclass
class Contribution:
    """What one frame added to the model, so it can be subtracted again."""

    keys: np.ndarray  # [V] sorted unique voxel keys
    sums: np.ndarray  # [V, 10]: w, w·xyz, w·rgb, w·normal


class VoxelModel:
    """Confidence-weighted voxel merge of aligned frames (positions, colours, normals)."""

    def __init__(self, voxel: float):
        self.voxel = voxel
        self.keys = np.zeros(0, np.int64)
        self.sums = np.zeros((0, 10))
        self.first_frame = np.zeros(0, np.int64)
        self._tree: cKDTree | None = None
        self._cache: tuple | None = None

    def contribution(self, X, rgb, normal, w) -> Contribution:
        keys = voxel_keys(X, self.voxel)
        uniq, inv = np.unique(keys, return_inverse=True)
        vals = np.concatenate([w[:, None], w[:, None] * X, w[:, None] * rgb, w[:, None] * normal], axis=1)
        sums = np.stack([np.bincount(inv, weights=vals[:, k], minlength=len(uniq)) for k in range(10)], axis=1)
        return Contribution(uniq, sums)

    def add(self, c: Contribution, frame_index: int) -> None:
        pos = np.searchsorted(self.keys, c.keys)
        hit = (pos < len(self.keys)) & (self.keys[np.minimum(pos, len(self.keys) - 1)] == c.keys) if len(self.keys) else np.zeros(len(c.keys), bool)
        self.sums[pos[hit]] += c.sums[hit]
        new = ~hit
        keys = np.concatenate([self.keys, c.keys[new]])
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.sums = np.concatenate([self.sums, c.sums[new]])[order]
        self.first_frame = np.concatenate([self.first_frame, np.full(new.sum(), frame_index)])[order]
        self._invalidate()

    def remove(self, c: Contribution) -> None:
        pos = np.searchsorted(self.keys, c.keys)
        self.sums[pos] -= c.sums
        keep = self.sums[:, 0] > 1e-9
        self.keys, self.sums, self.first_frame = self.keys[keep], self.sums[keep], self.first_frame[keep]
        self._invalidate()

    def _invalidate(self) -> None:
        self._tree = None
        self._cache = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(xyz [M, 3], rgb [M, 3], normal [M, 3], weight [M])."""
        if self._cache is None:
            w = self.sums[:, 0]
            n = self.sums[:, 7:10]
            n = n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)
            self._cache = (self.sums[:, 1:4] / w[:, None], self.sums[:, 4:7] / w[:, None], n, w)
        return self._cache

    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.arrays()[0])
        return self._tree

    def __len__(self) -> int:
        return len(self.keys)
