"""How much camera the dense flow holds on the harder benchmark: two-view and PnP poses against the truth.

    python -m benchmarks.bench_two_view --case room7_clutter_sweep --pairs 1,0 2,0 4,3
    python -m benchmarks.bench_two_view --case room1_orbit            # every (i, i−1)
    python -m benchmarks.bench_two_view --case room7_clutter_sweep --flow-finest-scale 1   # half-resolution flow

A diagnosis for the camera misses of bench_reconstruct_hard (BENCHMARKS.md, issue 15), not a method
of reconstruct.py. Per frame pair (i, j), with DIS flow i → j (matching.pixel_matches, the matches
reconstruct.py uses) and the true cameras and depth of the synthetic case:

- `E` : the rotation of camera i relative to j from the essential matrix (OpenCV five-point RANSAC,
  0.5 px), error in degrees against the true relative rotation;
- `sampson flow` / `sampson true`: the relative pose refined from the truth by robust Gauss–Newton on
  the Sampson error, on the flow's matches and on exact correspondences at the same pixels (exact
  correspondences recover it: any error of `sampson flow` is the flow's);
- `pnp` : camera i by robust PnP (camera_refine.bearing_pnp) of its pixels against frame j's true 3D
  points through the flow (bilinear depth), rotation ° and centre error (scene units);
- the flow's end-point error against the truth: median, the share over 2 px, and the mean error
  vector of the rest (a sub-pixel bias).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import cv2
import numpy as np
import tyro
from scipy.ndimage import map_coordinates
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from benchmarks.bench_reconstruct_hard import _HARD, CASES, FRESH, HELD_OUT
from worldstereo.align.camera_refine import bearing_pnp
from worldstereo.align.matching import pixel_matches
from worldstereo.bench.builders import SyntheticConfig, make_inconsistent
from worldstereo.geometry import project_points, skew


@dataclass
class Args:
    case: str = "room7_clutter_sweep"
    """A case of bench_reconstruct_hard (CASES, HELD_OUT or FRESH)."""
    pairs: list[str] = field(default_factory=list)
    """Frame pairs "i,j" (flow from i to j); empty: every (i, i−1)."""
    frames: int = 16
    width: int = 128
    height: int = 96
    flow_finest_scale: int = 0
    """DIS flow's finest pyramid level (reconstruct's --icp.corr.flow-finest-scale; 1 before the sixth pass)."""


def rotation_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Geodesic angle between two rotations, degrees."""
    return float(np.degrees(np.linalg.norm(Rotation.from_matrix(Ra @ Rb.T).as_rotvec())))


def relative_pose(c2w_i: np.ndarray, c2w_j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) with x_j = R x_i + t for camera-space points (OpenCV axes)."""
    M = np.linalg.inv(c2w_j) @ c2w_i
    return M[:3, :3], M[:3, 3]


def sampson_px(params: np.ndarray, xa: np.ndarray, xb: np.ndarray, R0: np.ndarray, focal: float) -> np.ndarray:
    """Sampson distances (≈ pixels) of normalised matches xa → xb [N, 3] under R = exp(ω) R0 and the
    translation direction params[3:] (normalised here: only its direction is seen)."""
    R = Rotation.from_rotvec(params[:3]).as_matrix() @ R0
    E = skew(params[3:] / np.linalg.norm(params[3:])) @ R
    Ea, Eb = xa @ E.T, xb @ E
    num = np.einsum("ij,ij->i", xb, Ea)
    return focal * num / np.sqrt(Ea[:, 0] ** 2 + Ea[:, 1] ** 2 + Eb[:, 0] ** 2 + Eb[:, 1] ** 2 + 1e-30)


def refine_two_view(pa: np.ndarray, pb: np.ndarray, K: np.ndarray, R0: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """Relative rotation refined from (R0, t0) on pixel matches pa → pb (Huber at 0.5 px)."""
    Ki = np.linalg.inv(K)
    xa, xb = (np.c_[p, np.ones(len(p))] @ Ki.T for p in (pa, pb))
    sol = least_squares(sampson_px, np.r_[0.0, 0.0, 0.0, t0], args=(xa, xb, R0, K[0, 0]), loss="huber", f_scale=0.5)
    return Rotation.from_rotvec(sol.x[:3]).as_matrix() @ R0


def project_true(depth_i: np.ndarray, K: np.ndarray, c2w_i: np.ndarray, c2w_j: np.ndarray,
                 pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where integer pixels pix of frame i land in frame j (exact), and their depth in i (0: none)."""
    z = depth_i[pix[:, 1], pix[:, 0]]
    x = np.stack([(pix[:, 0] - K[0, 2]) / K[0, 0] * z, (pix[:, 1] - K[1, 2]) / K[1, 1] * z, z], 1)
    return project_points(x, K, np.linalg.inv(c2w_j) @ c2w_i)[0], z


def true_points(depth_j: np.ndarray, K: np.ndarray, c2w_j: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points of frame j at sub-pixel uv (bilinear true depth) and that depth."""
    z = map_coordinates(depth_j, [uv[:, 1], uv[:, 0]], order=1)
    x = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * z, (uv[:, 1] - K[1, 2]) / K[1, 1] * z, z], 1)
    return x @ c2w_j[:3, :3].T + c2w_j[:3, 3], z


def pair_report(data, i: int, j: int, finest_scale: int = 0) -> dict:
    res = data.results
    K = np.asarray(res.K[i], np.float64)
    H, W = data.true_depth.shape[1:]
    v, u = np.mgrid[0:H, 0:W]
    pix = np.stack([u.ravel(), v.ravel()], 1)
    pb, rows = pixel_matches(res.image[i], res.image[j], pix, "flow", finest_scale)
    pa, pb = pix[rows].astype(np.float64), np.asarray(pb, np.float64)
    exact, z = project_true(data.true_depth[i], K, data.true_c2w[i], data.true_c2w[j], pix[rows])
    ok = z > 0
    pa, pb, exact = pa[ok], pb[ok], exact[ok]
    R_true, t_true = relative_pose(data.true_c2w[i], data.true_c2w[j])
    R_given = relative_pose(res.c2w()[i], res.c2w()[j])[0]
    out = {"pair": f"{i}->{j}", "matches": len(pa), "given": rotation_deg(R_given, R_true)}
    E, mask = cv2.findEssentialMat(pa, pb, K, method=cv2.RANSAC, prob=0.999, threshold=0.5)
    if E is not None and E.shape == (3, 3):
        _, R_e, _, _ = cv2.recoverPose(E, pa, pb, K, mask=mask.copy())
        out["E"] = rotation_deg(R_e, R_true)
    out["sampson_flow"] = rotation_deg(refine_two_view(pa, pb, K, R_true, t_true), R_true)
    out["sampson_true"] = rotation_deg(refine_two_view(pa, exact, K, R_true, t_true), R_true)
    X, zj = true_points(data.true_depth[j], K, data.true_c2w[j], pb)
    seen = zj > 0
    c2w = bearing_pnp(X[seen], pa[seen], K, res.c2w()[i])
    out["pnp_rot"] = rotation_deg(c2w[:3, :3], data.true_c2w[i][:3, :3])
    out["pnp_centre"] = float(np.linalg.norm(c2w[:3, 3] - data.true_c2w[i][:3, 3]))
    err = pb - exact
    epe = np.linalg.norm(err, axis=1)
    out["flow_epe_median"] = float(np.median(epe))
    out["flow_wrong"] = float(np.mean(epe > 2.0))
    out["flow_bias"] = err[epe <= 2.0].mean(0).round(2).tolist() if np.any(epe <= 2.0) else [np.nan, np.nan]
    return out


def main(a: Args) -> list[dict]:
    spec = {**CASES, **HELD_OUT, **FRESH}[a.case]
    data = make_inconsistent(SyntheticConfig(frames=a.frames, width=a.width, height=a.height, **_HARD, **spec))
    pairs = [tuple(map(int, p.split(","))) for p in a.pairs] or [(i, i - 1) for i in range(1, a.frames)]
    rows = []
    print(f"{a.case}: rotation errors in degrees against the truth; bad frames {list(data.bad_frames)}")
    for i, j in pairs:
        r = pair_report(data, i, j, a.flow_finest_scale)
        rows.append(r)
        print(f"{r['pair']:>6} n {r['matches']:5d} | given {r['given']:.2f} | E {r.get('E', float('nan')):.2f} "
              f"| sampson flow {r['sampson_flow']:.2f} true {r['sampson_true']:.3f} "
              f"| pnp {r['pnp_rot']:.2f}° {r['pnp_centre']:.3f} | flow epe {r['flow_epe_median']:.2f} px, "
              f"{100 * r['flow_wrong']:.0f} % > 2 px, bias of the rest {r['flow_bias']}",
              flush=True)
    return rows


if __name__ == "__main__":
    main(tyro.cli(Args, args=sys.argv[1:]))
