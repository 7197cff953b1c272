"""Camera metrics: RotErr, TransErr, ATE (Sim(3)-aligned RMSE), pairwise AUC@30; TUM IO.

All poses are c2w [N, 4, 4] (OpenCV axes), estimated and ground truth in the same frame order.

- RotErr   = Σ_j ∠(R̂_j, R_j), degrees, with every pose taken relative to its trajectory's first
             frame (R_j ← R_0ᵀ R_j); ∠ = geodesic angle arccos((tr(AᵀB) − 1)/2). Frame 0 adds 0.
             A *sum* over frames (CameraCtrl / WorldStereo tables): N frames each 2° off score
             2·(N−1). `rot_err_mean_deg` is the same divided by N − 1 (degrees per frame).
- APE rot  = √(mean_j ∠(S_R R̂_j, R_j)²), degrees, with S_R the rotation of the ATE's Sim(3)
             (evo APE `--pose_relation angle_deg --align --correct_scale`).
- TransErr = Σ_j ‖t̂_j/ŝ − t_j/s‖ on the camera centres relative to the first frame
             (t_j ← R_0ᵀ (c_j − c_0)), each trajectory divided by its own scale s = max_j ‖t_j‖
             ("max"; or "none" / "total" = path length).
- ATE      = √(mean_j ‖S(ĉ_j) − c_j‖²) after the Sim(3) S = Umeyama(ĉ → c) on camera centres
             (evo APE, translation part, `--align --correct_scale`).
- AUC@30   = over all pairs (i < j): e_ij = max(relative rotation error, angle between relative
             translation directions (sign-agnostic)); AUC = mean_{k=1..30} P[e < k°].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from worldstereo.errors import InputError
from worldstereo.geometry import Sim3, umeyama

TransNorm = Literal["max", "total", "none"]


def geodesic_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle (degrees) of Raᵀ Rb for batches of rotations [..., 3, 3]."""
    tr = np.einsum("...ij,...ij->...", Ra, Rb)  # tr(Raᵀ Rb)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def relative_to_first(c2w: np.ndarray) -> np.ndarray:
    """c2w [N, 4, 4] expressed in the first camera's frame (frame 0 becomes identity)."""
    inv0 = np.linalg.inv(c2w[0])
    return inv0[None] @ c2w


def rot_err(c2w_est: np.ndarray, c2w_gt: np.ndarray) -> float:
    """RotErr: Σ over frames of the geodesic angle (degrees) between relative-to-first rotations."""
    a, b = relative_to_first(c2w_est), relative_to_first(c2w_gt)
    return float(geodesic_deg(a[:, :3, :3], b[:, :3, :3]).sum())


def rot_err_mean(c2w_est: np.ndarray, c2w_gt: np.ndarray) -> float:
    """RotErr per frame: the mean geodesic angle (degrees) over frames 1..N−1 (relative to first)."""
    return rot_err(c2w_est, c2w_gt) / max(len(c2w_gt) - 1, 1)


def ape_rot_rmse(c2w_est: np.ndarray, c2w_gt: np.ndarray) -> float:
    """evo-style APE of rotation (degrees, RMSE) after the Sim(3) Umeyama alignment of the centres."""
    _, T = ate_rmse(c2w_est, c2w_gt)
    return float(np.sqrt(np.mean(geodesic_deg(T.R[None] @ c2w_est[:, :3, :3], c2w_gt[:, :3, :3]) ** 2)))


def _normalised_centres(c2w: np.ndarray, norm: TransNorm) -> np.ndarray:
    t = relative_to_first(c2w)[:, :3, 3]
    if norm == "none":
        return t
    s = np.linalg.norm(np.diff(t, axis=0), axis=1).sum() if norm == "total" else np.linalg.norm(t, axis=1).max()
    return t / s if s > 1e-12 else t


def trans_err(c2w_est: np.ndarray, c2w_gt: np.ndarray, norm: TransNorm = "max") -> float:
    """TransErr: Σ over frames of ‖t̂_j − t_j‖ after per-trajectory normalisation (see module doc)."""
    return float(np.linalg.norm(_normalised_centres(c2w_est, norm) - _normalised_centres(c2w_gt, norm), axis=1).sum())


def ate_rmse(c2w_est: np.ndarray, c2w_gt: np.ndarray, with_scale: bool = True) -> tuple[float, Sim3]:
    """ATE: RMSE of camera centres after Sim(3) Umeyama (est → gt). Returns (rmse, transform)."""
    ce, cg = c2w_est[:, :3, 3], c2w_gt[:, :3, 3]
    T = umeyama(ce, cg, with_scale=with_scale)
    err = np.linalg.norm(T.apply(ce) - cg, axis=1)
    return float(np.sqrt(np.mean(err**2))), T


def _pair_errors(c2w_est: np.ndarray, c2w_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative rotation and translation-direction errors (degrees) of all pairs i < j."""
    i, j = np.triu_indices(len(c2w_gt), k=1)

    def rel(c2w):  # pose of camera j in camera i's frame: T_ij = c2w_i⁻¹ c2w_j
        inv = np.linalg.inv(c2w)
        return inv[i] @ c2w[j]

    re, rg = rel(c2w_est), rel(c2w_gt)
    r_err = geodesic_deg(re[:, :3, :3], rg[:, :3, :3])
    te, tg = re[:, :3, 3], rg[:, :3, 3]
    cos = np.einsum("ij,ij->i", te, tg) / np.maximum(np.linalg.norm(te, axis=1) * np.linalg.norm(tg, axis=1), 1e-15)
    t_err = np.degrees(np.arccos(np.clip(np.abs(cos), 0.0, 1.0)))  # sign-agnostic
    return r_err, t_err


def pairwise_auc(c2w_est: np.ndarray, c2w_gt: np.ndarray, max_deg: int = 30) -> float:
    """AUC@max_deg of max(rotation, translation-direction) pair errors, 0..1 (1 = perfect)."""
    if len(c2w_gt) < 2:
        return float("nan")
    r, t = _pair_errors(c2w_est, c2w_gt)
    e = np.maximum(r, t)
    k = np.arange(1, max_deg + 1)
    return float(np.mean([(e < kk).mean() for kk in k]))


@dataclass
class CameraScores:
    rot_err_deg: float
    trans_err: float
    ate: float
    auc30: float
    n_frames: int
    rot_err_mean_deg: float = float("nan")  # RotErr / (N − 1): degrees per frame
    ape_rot_deg: float = float("nan")  # evo APE rotation RMSE (degrees) after Sim(3) alignment

    def as_dict(self) -> dict:
        return asdict(self)


def score_cameras(c2w_est: np.ndarray, c2w_gt: np.ndarray, trans_norm: TransNorm = "max") -> CameraScores:
    """All camera metrics for one trajectory (frames must correspond one to one)."""
    c2w_est = np.asarray(c2w_est, np.float64)
    c2w_gt = np.asarray(c2w_gt, np.float64)
    if c2w_est.shape != c2w_gt.shape:
        raise ValueError(f"trajectories differ in shape: {c2w_est.shape} vs {c2w_gt.shape}")
    enough = len(c2w_gt) >= 3  # a Sim(3) fit of the centres needs three
    ate = ate_rmse(c2w_est, c2w_gt)[0] if enough else float("nan")
    return CameraScores(rot_err(c2w_est, c2w_gt), trans_err(c2w_est, c2w_gt, trans_norm), ate,
                        pairwise_auc(c2w_est, c2w_gt), len(c2w_gt), rot_err_mean(c2w_est, c2w_gt),
                        ape_rot_rmse(c2w_est, c2w_gt) if enough else float("nan"))


# --------------------------------------------------------------------------- TUM format


def quat_to_rot(q_xyzw: np.ndarray) -> np.ndarray:
    """Unit quaternions [N, 4] (x, y, z, w) → rotations [N, 3, 3]."""
    q = q_xyzw / np.linalg.norm(q_xyzw, axis=1, keepdims=True)
    x, y, z, w = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def read_tum(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """TUM trajectory `timestamp tx ty tz qx qy qz qw` → (timestamps [N], c2w [N, 4, 4])."""
    path = Path(path)
    try:
        rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        data = np.array(rows, dtype=np.float64)
    except FileNotFoundError:
        raise InputError(path, "trajectory file not found")
    except ValueError:
        raise InputError(path, "not a TUM trajectory (expected 8 numbers per line)")
    if data.ndim != 2 or data.shape[1] != 8:
        raise InputError(path, "not a TUM trajectory (expected 8 numbers per line)")
    c2w = np.tile(np.eye(4), (len(data), 1, 1))
    c2w[:, :3, :3] = quat_to_rot(data[:, 4:8])
    c2w[:, :3, 3] = data[:, 1:4]
    return data[:, 0], c2w


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray, max_diff: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Timestamp association as evo does it: each stamp of the *shorter* list is matched to the
    nearest stamp of the longer (sorted) one, kept when within max_diff (ties → the earlier).
    Returns index arrays (ia into a, ib into b)."""
    if len(stamps_a) > len(stamps_b):
        ib, ia = associate(stamps_b, stamps_a, max_diff)
        return ia, ib
    j = np.searchsorted(stamps_b, stamps_a).clip(1, max(len(stamps_b) - 1, 1))
    left, right = stamps_b[j - 1], stamps_b[np.minimum(j, len(stamps_b) - 1)]
    nearest = np.where(np.abs(stamps_a - left) <= np.abs(stamps_a - right), j - 1, np.minimum(j, len(stamps_b) - 1))
    keep = np.abs(stamps_a - stamps_b[nearest]) <= max_diff
    return np.flatnonzero(keep), nearest[keep]
