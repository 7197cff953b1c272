"""Dense 2D matches between two frames' images, and which frames are near enough to match."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import cKDTree


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)


def dis_flows(img_a: np.ndarray, img_b: np.ndarray, finest_scale: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """DIS optical flow a → b and b → a ([H, W, 2] each; OpenCV's medium preset down to pyramid
    level `finest_scale`, 0 = the images' own resolution)."""
    ga, gb = _gray(img_a), _gray(img_b)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(finest_scale)
    return dis.calc(ga, gb, None), dis.calc(gb, ga, None)


def flow_matches(f_ab: np.ndarray, f_ba: np.ndarray, pix_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of b matching `pix_a` [M, 2] of a through the flows both ways, kept where the round trip
    returns within 1 px → (pix_b [K, 2] float, which rows [K])."""
    u, v = pix_a[:, 0], pix_a[:, 1]
    pb = pix_a + f_ab[v, u]
    h, w = f_ba.shape[:2]
    inside = (pb[:, 0] >= 0) & (pb[:, 0] <= w - 1) & (pb[:, 1] >= 0) & (pb[:, 1] <= h - 1)
    rb = np.round(pb).astype(np.int64)
    rb[:, 0] = np.clip(rb[:, 0], 0, w - 1)
    rb[:, 1] = np.clip(rb[:, 1], 0, h - 1)
    back = pb + f_ba[rb[:, 1], rb[:, 0]]
    ok = inside & (np.linalg.norm(back - pix_a, axis=1) < 1.0)
    return pb[ok], np.nonzero(ok)[0]


def pixel_matches(img_a: np.ndarray, img_b: np.ndarray, pix_a: np.ndarray, method: str,
                  finest_scale: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of image b matching `pix_a` [M, 2] of image a → (pix_b [K, 2] float, which rows [K])."""
    if method == "flow":
        return flow_matches(*dis_flows(img_a, img_b, finest_scale), pix_a)
    ga, gb = _gray(img_a), _gray(img_b)
    # SIFT + ratio test; matched keypoints snapped to the nearest requested pixel of a
    sift = cv2.SIFT_create(nfeatures=4000)
    ka, da = sift.detectAndCompute(ga, None)
    kb, db = sift.detectAndCompute(gb, None)
    if da is None or db is None or len(ka) < 8 or len(kb) < 8:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    pairs = cv2.BFMatcher().knnMatch(da, db, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
    if not good:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    pa = np.array([ka[m.queryIdx].pt for m in good])
    pb = np.array([kb[m.trainIdx].pt for m in good])
    d, rows = cKDTree(pix_a).query(pa)
    ok = d < 1.5
    return pb[ok] + (pix_a[rows[ok]] - pa[ok]), rows[ok]


def view_distance(c2w_a: np.ndarray, c2w_b: np.ndarray, scale: float) -> float:
    """How far apart two views are: centre distance / scene scale + angle between the optical axes
    (radians). The nearest views share the most surface."""
    cos = float(np.clip(c2w_a[:3, 2] @ c2w_b[:3, 2], -1.0, 1.0))
    return float(np.linalg.norm(c2w_a[:3, 3] - c2w_b[:3, 3])) / scale + float(np.arccos(cos))
