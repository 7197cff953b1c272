"""Resampling between images with a prefilter: a rip-map (separate x / y box levels) chosen per
output pixel from its footprint, so a view that shrinks the source (or an equirect row near a pole,
squeezed horizontally) averages what it covers instead of aliasing.

Every function takes source pixel coordinates `map_u`, `map_v` [h, w] (pixel centres at integers)
for each output pixel, as cv2.remap does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

SourceKind = Literal["equirect", "plain"]
_PAD = 3  # rows / columns of seam or pole padding: enough for bilinear and bicubic taps


def _footprint(map_u: np.ndarray, map_v: np.ndarray, wrap_width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Size (in source pixels, along u and along v) that one output pixel covers: the larger
    of its extents along the output's x and y steps (finite differences of the maps)."""
    def steps(m: np.ndarray, period: int | None) -> tuple[np.ndarray, np.ndarray]:
        gx = np.gradient(m, axis=1) if m.shape[1] > 1 else np.zeros_like(m)
        gy = np.gradient(m, axis=0) if m.shape[0] > 1 else np.zeros_like(m)
        if period is not None:  # a step across the seam is short the other way round
            gx = (gx + period / 2) % period - period / 2
            gy = (gy + period / 2) % period - period / 2
        return np.abs(gx), np.abs(gy)

    ux, uy = steps(map_u, wrap_width)
    vx, vy = steps(map_v, None)
    return np.maximum(ux, uy), np.maximum(vx, vy)


def _pad_equirect(img: np.ndarray) -> np.ndarray:
    """An equirect level ready for remap: the image twice side by side (so u ∈ [−0.5, 2W − 0.5),
    a map wrapped into one turn plus a yaw shift of less than a turn, reads without a modulo),
    padded by _PAD on every side. Columns wrap around the seam; rows continue over the pole,
    where the row beyond row 0 is row 0 again half a turn round (then row 1, …)."""
    h, w = img.shape[:2]
    P = _PAD
    out = np.empty((h + 2 * P, 2 * w + 2 * P) + img.shape[2:], img.dtype)
    out[P:P + h, P:P + w] = img
    out[P:P + h, P + w:P + 2 * w] = img
    out[P:P + h, :P] = img[:, w - P:]  # levels keep w ≥ 8 > _PAD
    out[P:P + h, P + 2 * w:] = img[:, :P]
    # row −1 − k is row k half a turn round: the same columns of the body, shifted by w / 2
    over = (np.arange(-P, 2 * w + P) + w // 2) % w
    out[:P] = img[np.arange(P - 1, -1, -1).clip(0, h - 1)][:, over]
    out[P + h:] = img[np.arange(h - 1, h - 1 - P, -1).clip(0, h - 1)][:, over]
    return out


@dataclass
class RipMap:
    """Box-filtered levels of one source image: level (i, j) is the image shrunk 2^i along x and
    2^j along y (INTER_AREA), padded for seams when the source is an equirect. Levels are built
    on first use: most views touch only a few."""

    source: np.ndarray  # [H, W(, C)]
    kind: SourceKind
    max_x: int = 6
    max_y: int = 6
    levels: dict = field(default_factory=dict)  # (i, j) → padded level image
    sizes: dict = field(default_factory=dict)  # (i, j) → (w, h) before padding

    def __post_init__(self) -> None:
        if self.source.dtype not in (np.uint8, np.float32):
            self.source = self.source.astype(np.float32)
        self.source = np.ascontiguousarray(self.source)
        # the coarsest level keeps ≥ 8 pixels a side: smaller ones would only smear the whole image
        self.max_x = max(0, min(self.max_x, int(math.log2(max(self.width, 1))) - 3))
        self.max_y = max(0, min(self.max_y, int(math.log2(max(self.height, 1))) - 3))

    @property
    def width(self) -> int:
        return self.source.shape[1]

    @property
    def height(self) -> int:
        return self.source.shape[0]

    def level(self, i: int, j: int) -> np.ndarray:
        if (i, j) not in self.levels:
            wi, hj = max(1, math.ceil(self.width / 2**i)), max(1, math.ceil(self.height / 2**j))
            lv = self.source if (i, j) == (0, 0) else cv2.resize(self.source, (wi, hj), interpolation=cv2.INTER_AREA)
            if lv.ndim == 2 and self.source.ndim == 3:  # cv2 drops a single channel axis
                lv = lv[..., None]
            self.sizes[(i, j)] = (wi, hj)
            self.levels[(i, j)] = _pad_equirect(lv) if self.kind == "equirect" else lv
        return self.levels[(i, j)]


def _level_weights(level: np.ndarray, top: int) -> list[tuple[int, np.ndarray]]:
    """Linear weights [h, w] of the integer levels around a fractional level (clamped to [0, top])."""
    level = np.clip(level, 0.0, top).astype(np.float32)
    lo = np.floor(level)
    frac = level - lo
    lo = lo.astype(np.int8)
    out = []
    for k in np.union1d(np.unique(lo), np.unique(lo + 1)):
        if k > top:
            continue
        w = np.where(lo == k, 1.0 - frac, 0.0) + np.where(lo + 1 == k, frac, 0.0)
        if np.any(w > 0):
            out.append((int(k), w.astype(np.float32)))
    return out


@dataclass
class Lookup:
    """Where to read (source coordinates [h, w]) and how (per rip-map level pair, a weight map)."""

    map_u: np.ndarray  # [h, w] float32
    map_v: np.ndarray  # [h, w] float32
    weights: list  # [((i, j), w [h, w] float32)], weights sum to 1 per pixel


def plan_lookup(map_u: np.ndarray, map_v: np.ndarray, source_width: int, kind: SourceKind,
                max_x: int, max_y: int, valid: np.ndarray | None = None) -> Lookup:
    """Footprint f (source pixels per output pixel) along u and along v picks the fractional
    level log2 f on each axis; the 2 × 2 neighbouring level pairs share the pixel linearly.
    Pixels outside `valid` [h, w] (whose value the caller discards) read level 0 only."""
    fu, fv = _footprint(map_u, map_v, source_width if kind == "equirect" else None)
    if valid is not None:
        fu, fv = np.where(valid, fu, 1.0), np.where(valid, fv, 1.0)
    wx = _level_weights(np.log2(np.maximum(fu, 1e-6)), max_x)
    wy = _level_weights(np.log2(np.maximum(fv, 1e-6)), max_y)
    weights = [((i, j), w_i * w_j) for i, w_i in wx for j, w_j in wy]
    weights = [(ij, w) for ij, w in weights if np.any(w > 0)]
    return Lookup(map_u.astype(np.float32), map_v.astype(np.float32), weights)


def _remap_level(rip: RipMap, i: int, j: int, map_u: np.ndarray, map_v: np.ndarray, interp: int) -> np.ndarray:
    """Bilinear (or `interp`) read of level (i, j); map_u of an equirect must lie in [−0.5, 2W − 0.5)."""
    lv = rip.level(i, j)
    wi, hj = rip.sizes[(i, j)]
    sx, sy = wi / rip.width, hj / rip.height
    pad = _PAD if rip.kind == "equirect" else 0
    # level coordinate = (c + 0.5)·s − 0.5, then + pad: one multiply-add per axis
    u = map_u if (sx == 1 and pad == 0) else cv2.addWeighted(map_u, sx, map_u, 0.0, 0.5 * sx - 0.5 + pad)
    v = map_v if (sy == 1 and pad == 0) else cv2.addWeighted(map_v, sy, map_v, 0.0, 0.5 * sy - 0.5 + pad)
    # replicate: an equirect never reads past its padding; a plain view's callers mask its outside
    out = cv2.remap(lv, u, v, interp, borderMode=cv2.BORDER_REPLICATE)
    return out[..., None] if out.ndim == 2 and lv.ndim == 3 else out


def read(rip: RipMap, lookup: Lookup, u_shift: float = 0.0, interp: Literal["linear", "cubic"] = "linear") -> np.ndarray:
    """Filtered read of `rip`'s source along `lookup` → [h, w(, C)] float32. `u_shift` (source
    pixels, equirect only) reads a yawed copy of the same view: the map moved along the columns."""
    map_u = lookup.map_u
    if u_shift:
        map_u = map_u + np.float32(u_shift % rip.width)
    flag = cv2.INTER_CUBIC if interp == "cubic" else cv2.INTER_LINEAR
    acc = None
    for (i, j), w in lookup.weights:
        lv = _remap_level(rip, i, j, map_u, lookup.map_v, flag if (i, j) == (0, 0) else cv2.INTER_LINEAR)
        if lv.ndim == 3:
            w = w[..., None]
        term = lv * w  # float32 whatever the level's dtype
        acc = term if acc is None else np.add(acc, term, out=acc)
    return acc


def sample(rip: RipMap, map_u: np.ndarray, map_v: np.ndarray, interp: Literal["linear", "cubic"] = "linear") -> np.ndarray:
    """Filtered lookup of `rip`'s source at (map_u, map_v) [h, w] → [h, w(, C)] float32
    (a box prefilter sized to each output pixel's footprint, then bilinear)."""
    return read(rip, plan_lookup(map_u, map_v, rip.width, rip.kind, rip.max_x, rip.max_y), interp=interp)


def sample_nearest(img: np.ndarray, map_u: np.ndarray, map_v: np.ndarray, kind: SourceKind) -> np.ndarray:
    """Nearest-pixel lookup (for depth: never blends foreground and background across an edge)."""
    h, w = img.shape[:2]
    ui = np.floor(map_u + 0.5).astype(np.int64)
    vi = np.clip(np.floor(map_v + 0.5).astype(np.int64), 0, h - 1)
    ui = np.mod(ui, w) if kind == "equirect" else np.clip(ui, 0, w - 1)
    return img[vi, ui]
