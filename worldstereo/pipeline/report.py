"""Contact sheets and the end-of-run summary: what a person looks at to see what happened."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth_m: np.ndarray) -> np.ndarray:
    """Turbo colour map of inverse depth (near = warm), black where depth is unknown. → [H, W, 3] uint8."""
    valid = np.isfinite(depth_m) & (depth_m > 0)
    out = np.zeros(depth_m.shape + (3,), np.uint8)
    if not valid.any():
        return out
    inv = np.zeros_like(depth_m, dtype=np.float32)
    inv[valid] = 1.0 / depth_m[valid]
    lo, hi = np.percentile(inv[valid], [2, 98])
    norm = np.clip((inv - lo) / max(hi - lo, 1e-12), 0, 1)
    col = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    out[valid] = col[valid]
    return out


def contact_sheet(rgb: np.ndarray, depth: np.ndarray, hole: np.ndarray, columns: int = 6, thumb_w: int = 192) -> np.ndarray:
    """Rows: generated frames, their depth, the cache-render hole mask (white = synthesised)."""
    n = len(rgb)
    pick = np.unique(np.round(np.linspace(0, n - 1, min(columns, n))).astype(int))
    h, w = rgb.shape[1:3]
    th = int(round(thumb_w * h / w))

    def thumb(img):
        return cv2.resize(img, (thumb_w, th), interpolation=cv2.INTER_AREA)

    rows = [
        [thumb(rgb[i]) for i in pick],
        [thumb(colorize_depth(depth[i])) for i in pick],
        [thumb(np.repeat((hole[i] * 255).astype(np.uint8)[..., None], 3, 2)) for i in pick],
    ]
    pad = 4
    sheet = np.full((3 * (th + pad) + pad, len(pick) * (thumb_w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = pad + r * (th + pad), pad + c * (thumb_w + pad)
            sheet[y:y + th, x:x + thumb_w] = img
    return sheet
