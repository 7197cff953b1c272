"""WorldStereo 2.0 conditioning tensors, computed as the released model was trained to read them.

Every function is small, torch/numpy only (no diffusers), and tested against a hand computation in
tests/test_worldstereo_conditioning.py. Camera matrices are OpenCV w2c / c2w as named; where the
release does something unusual (pixel offsets of its ray grid, its centring and scale rule), the
function does the same, because the weights learned that input, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from worldstereo.generate.worldstereo.config import DEFAULT_SCALE_MAP

# Pixel position of the ray through column i, row j in the release's Plücker grid:
# (i - 0.5, j + 0.5). Not symmetric; the model was trained with it, so it is kept.
RELEASE_RAY_OFFSET = (-0.5, 0.5)
RELEASE_CAMERA_SCALE = 2.0  # distance the first camera is put at after centring


def keyframe_indices(n_frames: int, n_keep: int = 21) -> np.ndarray:
    """Indices of the frames kept when a longer path is cut to `n_keep` keyframes (81 → 21).

    floor(linspace(0, n - 1, n_keep)); a path of ≤ n_keep frames is kept whole.
    81 → [0, 4, 8, ..., 80].
    """
    if n_frames <= n_keep:
        return np.arange(n_frames)
    return np.floor(np.linspace(0, n_frames - 1, n_keep)).astype(np.int64)


def resolution_bucket(height: int, width: int,
                      scale_map: Sequence[Sequence[int]] = DEFAULT_SCALE_MAP) -> tuple[int, int]:
    """(h, w) of the bucket whose aspect ratio h/w is closest to the image's; first on ties."""
    ratios = np.array([h / w for h, w in scale_map])
    best = int(np.argmin(np.abs(ratios - height / width)))
    return int(scale_map[best][0]), int(scale_map[best][1])


def rescale_intrinsics(K: torch.Tensor, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> torch.Tensor:
    """K [N, 3, 3] for an image resized from src (w, h) to dst (w, h): row 0 × sx, row 1 × sy."""
    out = K.clone().float()
    out[:, 0, :] *= dst_wh[0] / src_wh[0]
    out[:, 1, :] *= dst_wh[1] / src_wh[1]
    return out


def _centre_offset(centres: torch.Tensor) -> torch.Tensor:
    """Mean camera centre [1, 3] over centres not 10× beyond the 97th-percentile distance to the median.

    torch.median: for an even count this is the lower of the two middle values, as in the release.
    """
    dist = torch.norm(centres - centres.median(0, keepdim=True).values, dim=-1)
    keep = dist <= torch.clamp(torch.quantile(dist, 0.97) * 10, max=1e6)
    return centres[keep].mean(0, keepdim=True)


def _scale_factor(first_centre: torch.Tensor, camera_scale: float) -> float:
    """camera_scale / |c0|, or camera_scale itself when the first camera sits at the centre (|c0| ≤ 1e-5)."""
    n = float(torch.norm(first_centre))
    return camera_scale if abs(n) <= 1e-5 else camera_scale / n


def normalize_cameras(w2c: torch.Tensor, camera_scale: float = RELEASE_CAMERA_SCALE) -> torch.Tensor:
    """The release's camera normalisation of one path (the input to the Plücker rays).

    w2c [N, 4, 4] → w2c' with: (1) w2c'_i = w2c_i · c2w_0, so camera 0 is the identity;
    (2) camera centres shifted by their robust mean (see `_centre_offset`); (3) all translations
    multiplied by camera_scale / |c0| so the first camera ends `camera_scale` from the centre.
    Rotations are unchanged by (2) and (3).
    """
    w2c = w2c.double()
    w2c = w2c @ torch.linalg.inv(w2c[0])
    c2w = torch.linalg.inv(w2c)
    c2w[:, :3, 3] -= _centre_offset(c2w[:, :3, 3])
    s = _scale_factor(c2w[0, :3, 3], camera_scale)
    c2w[:, :3, 3] *= s
    return torch.linalg.inv(c2w).float()


def normalize_cameras_with_references(w2c: torch.Tensor, w2c_ref: torch.Tensor,
                                      camera_scale: float = RELEASE_CAMERA_SCALE) -> tuple[torch.Tensor, torch.Tensor]:
    """Target [N,4,4] and reference [R,4,4] w2c in one frame: target 0 = identity; the centring
    offset and the scale come from the target cameras only and are applied to all."""
    n = w2c.shape[0]
    both = torch.cat([w2c, w2c_ref]).double()
    both = both @ torch.linalg.inv(both[0])
    c2w = torch.linalg.inv(both)
    c2w[:, :3, 3] -= _centre_offset(c2w[:n, :3, 3])
    s = _scale_factor(c2w[0, :3, 3], camera_scale)
    c2w[:, :3, 3] *= s
    out = torch.linalg.inv(c2w).float()
    return out[:n], out[n:]


def rotation_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) with w ≥ 0 for rotations R [..., 3, 3].

    Shepperd's method: of the four candidate formulas, use the one with the largest denominator.
    """
    R = R.double()
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    pick = cand.argmax(-1)
    q = torch.empty(m.shape[0], 4, dtype=m.dtype)
    for i in range(m.shape[0]):
        a = m[i]
        k = int(pick[i])
        if k == 0:
            s = 2 * torch.sqrt(1 + tr[i])
            q[i] = torch.stack([s / 4, (a[2, 1] - a[1, 2]) / s, (a[0, 2] - a[2, 0]) / s, (a[1, 0] - a[0, 1]) / s])
        elif k == 1:
            s = 2 * torch.sqrt(1 + a[0, 0] - a[1, 1] - a[2, 2])
            q[i] = torch.stack([(a[2, 1] - a[1, 2]) / s, s / 4, (a[0, 1] + a[1, 0]) / s, (a[0, 2] + a[2, 0]) / s])
        elif k == 2:
            s = 2 * torch.sqrt(1 - a[0, 0] + a[1, 1] - a[2, 2])
            q[i] = torch.stack([(a[0, 2] - a[2, 0]) / s, (a[0, 1] + a[1, 0]) / s, s / 4, (a[1, 2] + a[2, 1]) / s])
        else:
            s = 2 * torch.sqrt(1 - a[0, 0] - a[1, 1] + a[2, 2])
            q[i] = torch.stack([(a[1, 0] - a[0, 1]) / s, (a[0, 2] + a[2, 0]) / s, (a[1, 2] + a[2, 1]) / s, s / 4])
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4).float()


def camera_pose_vectors(w2c: torch.Tensor) -> torch.Tensor:
    """[N, 7] = (quaternion w, x, y, z of the w2c rotation, w2c translation): the memory model's
    per-frame camera input (`camera_qt`), from already normalised w2c [N, 4, 4]."""
    return torch.cat([rotation_to_quaternion(w2c[:, :3, :3]), w2c[:, :3, 3].float()], -1)


def plucker_rays(K: torch.Tensor, w2c: torch.Tensor, height: int, width: int,
                 pixel_offset: tuple[float, float] = RELEASE_RAY_OFFSET) -> torch.Tensor:
    """Plücker ray embedding [6, N, H, W] = (d, o × d) per pixel, d the unit world ray direction,
    o the camera centre; pixel (row j, col i) is the point (i + offset_x, j + offset_y).

    K [N, 3, 3] pixels, w2c [N, 4, 4]. Pass cameras from `normalize_cameras` to match the release.
    """
    K = K.double()
    c2w = torch.linalg.inv(w2c.double())
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64) + pixel_offset[1],
                          torch.arange(width, dtype=torch.float64) + pixel_offset[0], indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)  # [HW, 3]
    cam_dirs = pix[None] @ torch.linalg.inv(K).transpose(1, 2)  # [N, HW, 3]
    world = F.normalize(cam_dirs @ c2w[:, :3, :3].transpose(1, 2), dim=-1)
    origin = c2w[:, None, :3, 3].expand_as(world)
    emb = torch.cat([world, torch.cross(origin, world, dim=-1)], -1)  # [N, HW, 6]
    return emb.reshape(-1, height, width, 6).permute(3, 0, 1, 2).float().contiguous()


def resize_hole_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Hole mask [N, h, w] (1 / True = the cache has nothing) → [N, H, W] float {0, 1}.

    Nearest-neighbour resize (source pixel floor(i · in / out)) then threshold at 0.5, as the
    release reads its render_mask.mp4 (white = hole).
    """
    m = mask.float()[:, None]
    m = F.interpolate(m, size=(height, width), mode="nearest")[:, 0]
    return (m >= 0.5).float()


def mask_latent_coverage(mask: torch.Tensor, spatial: int = 8) -> torch.Tensor:
    """Fraction of hole pixels in each latent cell: [N, H, W] → [N, H/s, W/s] (mean over s × s).

    The model does not take this: its mask embedding learns the same 8 × 8 reduction (a stride-8
    convolution, see model.MaskCameraEmbedding). Kept for diagnostics and tests of that cell layout.
    """
    n, h, w = mask.shape
    if h % spatial or w % spatial:
        raise ValueError(f"mask {h}x{w} is not a multiple of the latent stride {spatial}")
    return F.avg_pool2d(mask.float()[:, None], spatial)[:, 0]


@dataclass(frozen=True)
class ReferenceLayout:
    """Distinct references in the order the release stitches them, and where each sits.

    bank_ids[k] is the k-th distinct memory frame, in order of first retrieval along the path;
    ref_index[k] = (first target frame that retrieved it) - 1, so its tokens sit beside target
    latent frame ref_index[k] + 1.
    """

    bank_ids: list[int]
    ref_index: list[int]


def reference_layout(retrieved: Sequence[int | None]) -> ReferenceLayout:
    """From the memory frame retrieved for each target frame 1..N-1 (frame 0 is the input image,
    nothing is retrieved for it; None = no reference for that frame) to the stitched reference list."""
    bank_ids: list[int] = []
    ref_index: list[int] = []
    for i, bank_id in enumerate(retrieved, start=1):
        if bank_id is not None and bank_id not in bank_ids:
            bank_ids.append(int(bank_id))
            ref_index.append(i - 1)
    return ReferenceLayout(bank_ids, ref_index)


def cap_references(retrieved: Sequence[int | None], max_refs: int) -> list[int | None]:
    """Keep the `max_refs` memory frames retrieved by most target frames (earlier first retrieval wins
    ties); frames whose choice is dropped get None. Ours: the release re-selects with DINOv2 features."""
    ids = [i for i in retrieved if i is not None]
    order = list(dict.fromkeys(ids))
    keep = set(sorted(order, key=lambda i: -ids.count(i))[:max_refs])  # stable sort keeps retrieval order
    return [i if i in keep else None for i in retrieved]


def stitched_token_positions(ref_index: Sequence[int], frames: int, rows: int, cols: int
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary (t, y, x) positions of target and reference tokens on the width-stitched grid.

    Target token (f, y, x) → (f, y, x); reference k's token (y, x) → (ref_index[k] + 1, y, cols + x):
    each reference sits to the right of the target frame it was first retrieved for.
    Returns target [F, rows, cols, 3] and refs [R, rows, cols, 3], int64.
    """
    t, y, x = torch.meshgrid(torch.arange(frames), torch.arange(rows), torch.arange(cols), indexing="ij")
    target = torch.stack([t, y, x], -1)
    idx = torch.as_tensor(list(ref_index), dtype=torch.int64) + 1
    ref_y, ref_x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    refs = torch.stack([idx[:, None, None].expand(-1, rows, cols),
                        ref_y.expand(len(idx), -1, -1), ref_x.expand(len(idx), -1, -1) + cols], -1)
    return target, refs
