"""Gaussian rasterizer: one interface, two backends.

`rasterize(...)` renders 3D Gaussians (3DGS: volumetric ellipsoids) or 2D Gaussians (2DGS:
oriented discs, ray–splat intersection) from one pinhole camera and returns colour, depth, alpha
(and camera-frame normals for 2DGS).

Backends
    "torch"   our tile-based pure-torch implementation with a hand-written backward; runs anywhere.
    "gsplat"  gsplat's CUDA kernels (imported lazily, only when CUDA is available).
    "auto"    gsplat for float32 tensors on a CUDA device when gsplat imports, else torch.

Conventions: OpenCV camera axes, `w2c` [4, 4] world→camera, `K` [3, 3] in pixels with pixel centres
at integer coordinates (pixel (i, j) is evaluated at x = j, y = i). gsplat puts pixel centres at
+0.5, so its K gets cx + 0.5, cy + 0.5.

Compositing (both modes, front to back in order of the Gaussian centre's camera z):
    α_i = min(0.999, o_i exp(-σ_i(p)))     skipped unless α_i > 1/255
    w_i = α_i Π_{j<i} (1 − α_j)            stop before the Gaussian that takes T below 1e-4
    colour = Σ w_i c_i + (1 − Σ w_i) bg,  depth = Σ w_i z_i,  alpha = Σ w_i
`depth` is accumulated (divide by alpha for the expected depth); z_i is the centre depth.

    3DGS: σ = ½ dᵀ Σ₂⁻¹ d, d = p − μ₂, Σ₂ = J W Σ Wᵀ Jᵀ + 0.3 I (EWA splatting with low-pass filter).
    2DGS: σ = ½ min(u² + v², 2 |p − μ₂|²), (u, v) where the pixel ray meets the disc plane, in
          units of the disc's scales (Huang et al. 2024, with the screen-space low-pass filter).

Example:
    >>> out = rasterize(means, quats, scales, opacities, colours, w2c, K, 64, 48)
    >>> out.colour.shape, out.depth.shape, out.alpha.shape
    (torch.Size([48, 64, 3]), torch.Size([48, 64, 1]), torch.Size([48, 64, 1]))
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from worldstereo.render.camera import camera_centres

Mode = Literal["3dgs", "2dgs"]
Backend = Literal["auto", "torch", "gsplat"]

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
EPS2D = 0.3  # 3DGS screen-space low-pass variance (px²)
FILTER_2DGS = 2.0  # 2DGS screen-space filter: σ₂ = FILTER_2DGS · |p − μ₂|²
K_BLOCK = 32  # first block of Gaussians per tile composited at once in the forward; blocks then double


@dataclass
class RenderOutput:
    """One rendered view. Shapes for an H×W image and N Gaussians."""

    colour: Tensor  # [H, W, 3]
    depth: Tensor  # [H, W, 1] accumulated Σ w_i z_i (expected depth = depth / alpha)
    alpha: Tensor  # [H, W, 1]
    normals: Tensor | None  # [H, W, 3] accumulated camera-frame normals (2DGS only)
    extra: Tensor | None  # [H, W, E] accumulated extra per-Gaussian features (e.g. z² for distortion)
    means2d: Tensor  # [N, 2] projected centres
    radii: Tensor  # [N] half-size of the screen footprint in px (0 = culled), no grad
    densify_source: Tensor | None = None  # the tensor whose .grad carries the densification signal
    densify_map: Callable[[Tensor], Tensor] | None = None  # its .grad → [N, 2] in pixels

    def retain_densify_grad(self) -> None:
        """Call before backward: keep the gradient `densify_grad` reads."""
        src = self.densify_source
        if src is not None and src.requires_grad and not src.is_leaf:
            src.retain_grad()

    def densify_grad(self) -> Tensor | None:
        """After backward: ∂L/∂(screen position) [N, 2] in pixels, the signal of adaptive density
        control (3DGS: of the projected mean; 2DGS: of the disc centre's projection as the
        ray–splat term sees it, like gsplat's `gradient_2dgs`). None when nothing was tracked."""
        src = self.densify_source
        if src is None or src.grad is None:
            return None
        return self.densify_map(src.grad) if self.densify_map is not None else src.grad


# --------------------------------------------------------------------------- shared math

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_to_colour(sh: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """Evaluate real spherical harmonics (INRIA / gsplat convention) → RGB, clamped at 0.

    sh [N, K, 3] with K ≥ (degree+1)², dirs [N, 3] (normalised here) → [N, 3] = Σ c_lm Y_lm + 0.5.
    """
    out = SH_C0 * sh[:, 0]
    if degree > 0:
        d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        x, y, z = d[:, :1], d[:, 1:2], d[:, 2:3]
        out = out - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            out = (out + SH_C2[0] * xy * sh[:, 4] + SH_C2[1] * yz * sh[:, 5]
                   + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6] + SH_C2[3] * xz * sh[:, 7]
                   + SH_C2[4] * (xx - yy) * sh[:, 8])
            if degree > 2:
                out = (out + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9] + SH_C3[1] * xy * z * sh[:, 10]
                       + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                       + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                       + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13]
                       + SH_C3[5] * z * (xx - yy) * sh[:, 14] + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15])
    return (out + 0.5).clamp_min(0.0)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Unit-normalised quaternions [N, 4] (w, x, y, z) → rotation matrices [N, 3, 3]."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


@dataclass
class Projected:
    """Per-Gaussian screen-space quantities for one camera (differentiable except bbox/valid)."""

    means2d: Tensor  # [N, 2]
    shape: Tensor  # 3DGS: conic [N, 3] (a, b, c) of Σ₂⁻¹; 2DGS: [N, 9] (A, B, C) with c(x,y) = A + Bx + Cy
    depths: Tensor  # [N] camera z of the centre
    normals: Tensor | None  # [N, 3] camera-frame, facing the camera (2DGS)
    bbox: Tensor  # [N, 4] float x0, x1, y0, y1 of the footprint where α ≥ 1/255
    valid: Tensor  # [N] bool
    sigma_max: Tensor  # [N] σ up to which α = o·exp(−σ) ≥ 1/255, i.e. ln(255 o) (no grad)
    footprints: Tensor  # [N, F, 6] ellipses (μx, μy, a, b, c, σ_max) whose union is where α ≥ 1/255 (no grad)
    M: Tensor | None = None  # 2DGS [N, 3, 3]: (x z, y z, z) = M (u, v, 1); column 2 is the centre


def _alpha_extent_sq(opacities: Tensor) -> Tensor:
    """σ-threshold beyond which α = o·exp(−σ) < 1/255: σ < ln(255 o); returned as 2 ln(255 o)."""
    return 2.0 * torch.log((opacities * 255.0).clamp_min(1.0))


def project_3dgs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, w2c: Tensor, K: Tensor,
                 width: int, height: int, near: float = 0.01, far: float = 1e10) -> Projected:
    """EWA projection of 3D Gaussians (means [N,3], quats [N,4] wxyz, scales [N,3] linear)."""
    R, t = w2c[:3, :3], w2c[:3, 3]
    pc = means @ R.T + t  # [N, 3]
    x, y, z = pc.unbind(-1)
    valid = (z > near) & (z < far)
    zs = torch.where(valid, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # clamp the Jacobian's view direction a little outside the image, as 3DGS and gsplat do: to the
    # image border (pixel edges, our centres are at integers) plus 15 % of the image size
    lim_xp, lim_xn = (width - 0.5 - cx) / fx + 0.15 * width / fx, (cx + 0.5) / fx + 0.15 * width / fx
    lim_yp, lim_yn = (height - 0.5 - cy) / fy + 0.15 * height / fy, (cy + 0.5) / fy + 0.15 * height / fy
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_xn), lim_xp)
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_yn), lim_yp)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / zs ** 2, zero, fy / zs, -fy * ty / zs ** 2], -1).reshape(-1, 2, 3)
    Rq = quat_to_rotmat(quats)
    M = R @ (Rq * scales[:, None, :])  # [N, 3, 3] camera-frame R S
    JM = J @ M  # [N, 2, 3]
    cov = JM @ JM.transpose(1, 2)  # [N, 2, 2]
    a = cov[:, 0, 0] + EPS2D
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + EPS2D
    det = a * c - b * b
    valid = valid & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conic = torch.stack([c / det, -b / det, a / det], -1)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    with torch.no_grad():
        e2 = _alpha_extent_sq(opacities)
        hx, hy = (e2 * a).clamp_min(0).sqrt(), (e2 * c).clamp_min(0).sqrt()
        bbox = torch.stack([means2d[:, 0] - hx, means2d[:, 0] + hx, means2d[:, 1] - hy, means2d[:, 1] + hy], -1)
        valid = valid & (e2 > 0)
        footprint = torch.cat([means2d, conic, 0.5 * e2[:, None]], -1)[:, None]
    return Projected(means2d, conic, z, None, bbox, valid, 0.5 * e2, footprint)


def project_2dgs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, w2c: Tensor, K: Tensor,
                 width: int, height: int, near: float = 0.01, far: float = 1e10) -> Projected:
    """Projection of 2D Gaussian discs (scales[:, 2] is ignored).

    The disc point (u, v) is P = μ + u s₀ r₀ + v s₁ r₁ (r = columns of R(q)); in pixels,
    (x z, y z, z)ᵀ = M (u, v, 1)ᵀ with M = K [W s₀r₀, W s₁r₁, Wμ + t]. For pixel (x, y) the
    intersection is (u, v, 1) ∝ c = (x M₂ − M₀) × (y M₂ − M₁) = M₀×M₁ + x M₁×M₂ + y M₂×M₀ (rows Mᵢ).
    """
    R, t = w2c[:3, :3], w2c[:3, 3]
    Rq = quat_to_rotmat(quats)
    pc = means @ R.T + t  # [N, 3]
    tu = (Rq[:, :, 0] * scales[:, :1]) @ R.T
    tv = (Rq[:, :, 1] * scales[:, 1:2]) @ R.T
    H = torch.stack([tu, tv, pc], dim=-1)  # [N, 3, 3] columns
    M = K @ H  # [N, 3, 3] rows: x·z, y·z, z
    M0, M1, M2 = M[:, 0], M[:, 1], M[:, 2]
    shape = torch.cat([torch.cross(M0, M1, dim=-1), torch.cross(M1, M2, dim=-1), torch.cross(M2, M0, dim=-1)], -1)
    z = pc[:, 2]
    valid = (z > near) & (z < far)
    zs = torch.where(valid, z, torch.ones_like(z))
    means2d = torch.stack([M[:, 0, 2] / zs, M[:, 1, 2] / zs], -1)
    n = Rq[:, :, 2] @ R.T
    n = n * torch.where((n * pc).sum(-1, keepdim=True) > 0, -1.0, 1.0)
    with torch.no_grad():
        r2 = _alpha_extent_sq(opacities)  # u² + v² ≤ r2 where α ≥ 1/255
        # bounding box of the projected ellipse from its dual conic C* = M diag(r², r², −1) Mᵀ
        d = torch.stack([r2, r2, -torch.ones_like(r2)], -1)  # [N, 3]
        Cs = torch.einsum("nik,nk,njk->nij", M, d, M)
        c22 = Cs[:, 2, 2]
        bounded = c22 < -1e-12
        c22 = torch.where(bounded, c22, -torch.ones_like(c22))
        cxp, cyp = Cs[:, 0, 2] / c22, Cs[:, 1, 2] / c22
        hx = (cxp ** 2 - Cs[:, 0, 0] / c22).clamp_min(0).sqrt()
        hy = (cyp ** 2 - Cs[:, 1, 1] / c22).clamp_min(0).sqrt()
        # the same ellipse from the coefficients the compositing uses (float64); where it is sound it
        # gives the box and the footprint, so binning and compositing agree even for slivers
        ell, ok = _disc_ellipse(shape.detach(), r2)
        sxx, syy = ell[:, 5], ell[:, 6]
        cxp = torch.where(ok, ell[:, 0], cxp.double()).to(cxp.dtype)
        cyp = torch.where(ok, ell[:, 1], cyp.double()).to(cyp.dtype)
        hx = torch.where(ok, sxx.clamp_min(0).sqrt() * 1.01, hx.double()).to(hx.dtype)
        hy = torch.where(ok, syy.clamp_min(0).sqrt() * 1.01, hy.double()).to(hy.dtype)
        rf = (r2 / FILTER_2DGS).sqrt()  # the screen-space filter's own footprint
        mx, my = means2d[:, 0], means2d[:, 1]
        bbox = torch.stack([torch.minimum(cxp - hx, mx - rf), torch.maximum(cxp + hx, mx + rf),
                            torch.minimum(cyp - hy, my - rf), torch.maximum(cyp + hy, my + rf)], -1)
        valid = valid & bounded & (r2 > 0)
        disc = torch.where(ok[:, None], torch.cat([ell[:, :5], torch.full_like(ell[:, :1], 0.5 * 1.02)], -1),
                           _box_ellipse(bbox))
        footprints = torch.stack([disc,  # the disc: u² + v² ≤ r2
                                  torch.stack([mx, my, 1 / rf ** 2, torch.zeros_like(rf), 1 / rf ** 2,
                                               torch.full_like(rf, 0.5)], -1).double()], 1)  # the filter's circle
    return Projected(means2d, shape, z, n, bbox, valid, 0.5 * r2, footprints, M)


def _disc_ellipse(shape: Tensor, r2: Tensor) -> tuple[Tensor, Tensor]:
    """Where the 2DGS ray–splat term reaches u² + v² ≤ r2, from the compositing's own coefficients
    c(x, y) = A + B x + C y: c₀² + c₁² − r2 c₂² ≤ 0 is the point conic Σₖ ±Lₖ Lₖᵀ, Lₖ = (Bₖ, Cₖ, Aₖ).
    Returns float64 [N, 7] (μx, μy, a, b, c, Σxx, Σyy) with ½ dᵀ (a b; b c) d ≤ ½ inside, and [N] ok
    (False where the conic is no proper ellipse, e.g. numerically degenerate slivers)."""
    sh = shape.double()
    L = torch.stack([sh[:, 3:6], sh[:, 6:9], sh[:, 0:3]], 1)  # [N, 3 (x, y, 1), 3 components]
    w = torch.stack([torch.ones_like(r2), torch.ones_like(r2), -r2], -1).double()  # [N, 3]
    Q = torch.einsum("nik,nk,njk->nij", L, w, L)
    Pxx, Pxy, Pyy, qx, qy, q1 = Q[:, 0, 0], Q[:, 0, 1], Q[:, 1, 1], Q[:, 0, 2], Q[:, 1, 2], Q[:, 2, 2]
    det = Pxx * Pyy - Pxy * Pxy
    ok = (det > 0) & (Pxx > 0) & torch.isfinite(det)
    det = torch.where(ok, det, torch.ones_like(det))
    mx, my = -(Pyy * qx - Pxy * qy) / det, -(Pxx * qy - Pxy * qx) / det  # −P⁻¹ q
    k = -(q1 + qx * mx + qy * my)  # inside: dᵀ P d ≤ k
    ok = ok & (k > 0) & torch.isfinite(k)
    k = torch.where(ok, k, torch.ones_like(k))
    ell = torch.stack([mx, my, Pxx / k, Pxy / k, Pyy / k, k * Pyy / det, k * Pxx / det], -1)
    ok = ok & torch.isfinite(ell).all(-1)
    return torch.where(ok[:, None], ell, torch.zeros_like(ell)), ok


def _box_ellipse(bbox: Tensor) -> Tensor:
    """The ellipse (μx, μy, a, b, c, ½) through the corners of each box [N, 4], float64 [N, 6]: the
    footprint of a disc whose screen conic is degenerate."""
    bb = bbox.double()
    hx2, hy2 = 2 * ((bb[:, 1] - bb[:, 0]) / 2) ** 2 + 1e-9, 2 * ((bb[:, 3] - bb[:, 2]) / 2) ** 2 + 1e-9
    return torch.stack([(bb[:, 0] + bb[:, 1]) / 2, (bb[:, 2] + bb[:, 3]) / 2, 1 / hx2, torch.zeros_like(hx2),
                        1 / hy2, torch.full_like(hx2, 0.5)], -1)


# --------------------------------------------------------------------------- tiles


@dataclass
class TileBins:
    """Gaussian–tile pairs sorted by (tile, depth): tile t holds gid[start[t] : start[t] + count[t]]."""

    tile: int  # tile side in px
    tiles_x: int
    tiles_y: int
    gid: Tensor  # [pairs] Gaussian ids
    start: Tensor  # [tiles]
    count: Tensor  # [tiles]
    n_gaussians: int
    budget: int  # max elements of one [B, K, tile²] work tensor

    @property
    def n_pairs(self) -> int:
        return int(self.gid.shape[0])


def bin_gaussians(proj: Projected, width: int, height: int, tile: int = 4,
                  budget: int = 1 << 20) -> TileBins:
    """Assign each visible Gaussian to the tiles its footprint touches; sort per tile by depth.

    Pairs are made row of tiles by row of tiles: a footprint ellipse covers only an interval of each
    row of its bounding box (`_ellipse_rows`; 2DGS: the union of the disc's and the screen filter's
    intervals), which drops a fifth (3DGS) to a third (2DGS) of the box's pairs. They are made in
    depth order, so one stable sort by tile id (int32) leaves each tile's list front to back, about
    twice as fast as sorting (tile, depth) keys.
    """
    N = proj.means2d.shape[0]
    tx_n, ty_n = (width + tile - 1) // tile, (height + tile - 1) // tile
    with torch.no_grad():
        order = torch.argsort(proj.depths.detach())
        bb = proj.bbox[order]
        x0 = torch.floor(bb[:, 0] / tile).clamp(0, tx_n)
        x1 = (torch.floor(bb[:, 1] / tile) + 1).clamp(0, tx_n)
        y0 = torch.floor(bb[:, 2] / tile).clamp(0, ty_n)
        y1 = (torch.floor(bb[:, 3] / tile) + 1).clamp(0, ty_n)
        rows = torch.where(proj.valid[order] & (x1 > x0), (y1 - y0).clamp_min(0), torch.zeros_like(y0)).long()
        slot, row = _expand(rows)  # per tile row: position in depth order, row within the box
        ty = row.to(y0.dtype) + y0.index_select(0, slot)
        fp = proj.footprints.detach()[order]
        ivals = [_ellipse_rows(fp[:, f].index_select(0, slot), ty, tile) for f in range(fp.shape[1])]
        (a0, a1), rest = ivals[0], ivals[1:]
        a1 = torch.maximum(a1, a0)  # an empty interval as [a0, a0)
        segs = [(a0, a1)]
        for b0, b1 in rest:  # 2DGS: the filter's interval minus the disc's, in up to two pieces
            segs += [(b0, torch.minimum(b1, a0)), (torch.maximum(b0, a1), b1)]
        # per row its disjoint segments, clipped to the box; row-major keeps the pairs in depth order
        lo = torch.maximum(torch.stack([s0 for s0, _ in segs], 1), x0.index_select(0, slot)[:, None])
        hi = torch.minimum(torch.stack([s1 for _, s1 in segs], 1), x1.index_select(0, slot)[:, None])
        c0, cols = lo.reshape(-1), (hi - lo).clamp_min(0).reshape(-1).long()
        pair_seg, col = _expand(cols)
        tx = col.to(c0.dtype) + c0.index_select(0, pair_seg)
        pair_row = torch.div(pair_seg, len(segs), rounding_mode="floor")
        tid, perm = torch.sort((ty.index_select(0, pair_row) * tx_n + tx).int(), stable=True)
        gid = order.index_select(0, slot.index_select(0, pair_row.index_select(0, perm)))
        tcount = torch.bincount(tid, minlength=tx_n * ty_n)
        tstart = torch.cumsum(tcount, 0) - tcount
    return TileBins(tile, tx_n, ty_n, gid, tstart, tcount, N, budget)


def _expand(counts: Tensor) -> tuple[Tensor, Tensor]:
    """counts [M] → (owner, local) [Σ counts]: element j belongs to `owner[j]` and is its
    `local[j]`-th one."""
    owner = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    local = torch.arange(len(owner), device=counts.device) - (torch.cumsum(counts, 0) - counts).index_select(0, owner)
    return owner, local


def _ellipse_rows(g: Tensor, ty: Tensor, tile: int) -> tuple[Tensor, Tensor]:
    """Tile columns [c0, c1) where the ellipse σ ≤ σ_max of g = (μx, μy, a, b, c, σ_max) [R, 6] meets
    the pixel centres of tile row `ty` [R] (float; empty when c1 ≤ c0).

    With D(dy) = 2aσ_max − det·dy², the ellipse's x at height dy spans (−b dy ± √D) / a; the right
    end is concave in dy, so its maximum over the row's band is at the ellipse's rightmost point
    clamped into the band (the left end likewise, mirrored).
    """
    mx, my, a, b, c, s = g.double().unbind(-1)  # float64: a·c − b² of a sliver cancels in float32
    ty = ty.double()
    s = s + 1e-4  # margin: never drop a pair the compositing would keep
    det = a * c - b * b
    hy = (2 * s * a / det).sqrt()  # ellipse half height
    lo = torch.maximum(ty * tile - my, -hy)
    hi = torch.minimum(ty * tile + (tile - 1) - my, hy)
    dy_right = -b * (2 * s / (c * det)).sqrt()  # height of the rightmost point (Σ_xy √(2σ/Σ_xx))
    dr = torch.minimum(torch.maximum(dy_right, lo), hi)
    dl = torch.minimum(torch.maximum(-dy_right, lo), hi)
    x_right = mx + (-b * dr + (2 * a * s - det * dr * dr).clamp_min(0).sqrt()) / a
    x_left = mx + (-b * dl - (2 * a * s - det * dl * dl).clamp_min(0).sqrt()) / a
    c0 = torch.ceil((x_left - (tile - 1)) / tile)
    c1 = torch.where(hi >= lo, torch.floor(x_right / tile) + 1, c0)
    # a degenerate ellipse (det ≤ 0, ∞, NaN): the whole row, which the caller clips to the box
    bad = ~(torch.isfinite(c0) & torch.isfinite(c1) & (det > 0))
    c0 = torch.where(bad, torch.full_like(c0, -math.inf), c0)
    c1 = torch.where(bad, torch.full_like(c1, math.inf), c1)
    return c0.to(g.dtype), c1.to(g.dtype)


def _chunks(bins: TileBins, counts: Tensor, k_multiple: int = 1) -> list[tuple[Tensor, Tensor]]:
    """Group tiles with `counts[t]` > 0 Gaussians (front-most first) into padded chunks
    (tile ids [B], Gaussian ids [B, K] padded with N, K a multiple of `k_multiple`), B·K·tile² ≤ budget."""
    order = torch.argsort(counts, descending=True)
    sorted_counts = counts[order].tolist()
    px, N, n_pairs = bins.tile ** 2, bins.n_gaussians, bins.n_pairs
    chunks, s = [], 0
    while s < len(sorted_counts) and sorted_counts[s] > 0:
        k = sorted_counts[s]
        b = max(1, bins.budget // (k * px))
        small = bins.budget // (4 * k * px)  # small chunks: padding is cheaper than more chunks
        b = max(1, small, sum(1 for c in sorted_counts[s:s + b] if c >= 0.75 * k))  # bound the waste
        tiles = order[s:s + b]
        cnt = counts[tiles]
        tiles, cnt = tiles[cnt > 0], cnt[cnt > 0]
        ar = torch.arange(-(-k // k_multiple) * k_multiple, device=counts.device)
        pos = (bins.start[tiles][:, None] + ar).clamp_max(n_pairs - 1)
        chunks.append((tiles, torch.where(ar < cnt[:, None], bins.gid[pos], torch.full_like(pos, N))))
        s += b
    return chunks


def _tile_basis(tile: int, dtype, device) -> tuple[Tensor, Tensor]:
    """Pixel offsets from the tile centre: quadratic basis [6, P] (1, x, y, x², xy, y²), linear [3, P]."""
    r = torch.arange(tile, dtype=dtype, device=device) - (tile - 1) / 2
    ly, lx = torch.meshgrid(r, r, indexing="ij")
    lx, ly = lx.reshape(-1), ly.reshape(-1)
    one = torch.ones_like(lx)
    return torch.stack([one, lx, ly, lx * lx, lx * ly, ly * ly]), torch.stack([one, lx, ly])


def _tile_origins(tiles: Tensor, bins: TileBins, dtype) -> Tensor:
    """Pixel coordinates of the centres of `tiles` [B] → [B, 2]."""
    c = (bins.tile - 1) / 2
    return torch.stack([(tiles % bins.tiles_x) * bins.tile + c, (tiles // bins.tiles_x) * bins.tile + c], -1).to(dtype)


# --------------------------------------------------------------------------- tile compositing
#
# Work tensors are [B tiles, K Gaussians, P pixels]. Every elementwise pass over them costs about the
# same, and a boolean mask or `torch.where` costs several, so the code below makes few passes: the
# opacity is folded into the exponent (α_raw = exp(log o − σ), one bmm for 3DGS), cut-offs are
# in-place `threshold`s, w = α/(1 − α)·T_behind needs no exclusive product, the per-pixel sums the
# backward needs come from the forward's output, and the opacity gradient is one of the σ moments.


def _log_alpha(mode: str, m: Tensor, shape: Tensor, log_o: Tensor, origin: Tensor, q6: Tensor, q3: Tensor):
    """log α_raw = log o − σ [B, K, P] for a chunk; m [B, K, 2] local means, shape [B, K, S],
    log_o [B, K]; also returns the cache the 2DGS backward needs (c [B, K, 3, P], c₂, σ₃, σ₂)."""
    mx, my = m[..., 0], m[..., 1]
    if mode == "3dgs":
        a, b, c = shape.unbind(-1)
        # σ(l) = ½ (l − m)ᵀ Σ₂⁻¹ (l − m) expanded in the basis (1, x, y, x², xy, y²) of local pixel l
        Q = torch.stack([log_o - (0.5 * a * mx * mx + b * mx * my + 0.5 * c * my * my), a * mx + b * my,
                         b * mx + c * my, -0.5 * a, -b, -0.5 * c], -1)  # [B, K, 6]
        return Q @ q6, None
    A, Bc, Cc = shape[..., 0:3], shape[..., 3:6], shape[..., 6:9]
    A_loc = A + Bc * origin[:, None, 0:1] + Cc * origin[:, None, 1:2]
    coef = torch.stack([A_loc, Bc, Cc], -1)  # [B, K, 3(comp), 3(basis)]
    cvec = coef @ q3  # [B, K, 3, P]
    c0, c1, c2 = cvec.unbind(2)
    inv_c2sq = (c2 * c2).add_(1e-30).reciprocal_()  # finite on the disc's vanishing line, no mask needed
    s3 = (c0 * c0).add_(c1 * c1).mul_(inv_c2sq).clamp_max_(1e30)  # finite, so 0·σ₃ stays 0 in the backward
    Q2 = FILTER_2DGS * torch.stack([mx * mx + my * my, -2 * mx, -2 * my, torch.ones_like(mx),
                                    torch.zeros_like(mx), torch.ones_like(mx)], -1)
    s2 = Q2 @ q6
    return log_o[..., None] - 0.5 * torch.minimum(s3, s2), (cvec, inv_c2sq, s3, s2)


@dataclass
class _Weights:
    """Front-to-back compositing of one chunk; all [B, K, P]."""

    a_raw: Tensor  # o·exp(−σ)
    alpha: Tensor  # α_raw, 0 up to ALPHA_MIN, clamped to ALPHA_MAX
    ratio: Tensor  # α / (1 − α)
    t_live: Tensor  # transmittance behind each Gaussian, 0 from the one that takes it below T_MIN on
    w: Tensor  # α·T_in_front for the Gaussians before that one, else 0


def _composite(log_a: Tensor, t0: Tensor | None = None) -> _Weights:
    """Weights from log α_raw [B, K, P] and the transmittance in front of the chunk t0 [B, P].

    Comparisons and masked writes are slow on the CPU (bool tensors), so the cut-offs are
    `threshold`s and the weights w = α T_in_front = (α / (1 − α)) T_behind.
    """
    a_raw = log_a.exp_()
    alpha = torch.threshold(a_raw, ALPHA_MIN, 0.0).clamp_max_(ALPHA_MAX)
    one_m = alpha.neg().add_(1.0)
    t_incl = torch.cumprod(one_m, dim=1)
    if t0 is not None:
        t_incl.mul_(t0[:, None])
    t_live = torch.threshold(t_incl, T_MIN, 0.0)
    ratio = alpha.div(one_m)
    return _Weights(a_raw, alpha, ratio, t_live, ratio * t_live)


def _cumsum_k(x: Tensor, block: int = 16) -> Tensor:
    """cumsum over dim 1 of [B, K, P] with K % block == 0, in two levels (torch's CPU cumsum
    accumulates in double one element at a time, ~3× slower than this)."""
    B, K, P = x.shape
    inner = torch.cumsum(x.reshape(B, K // block, block, P), 2)
    ends = inner[:, :, -1]
    carry = torch.cumsum(ends, 1).sub_(ends)
    return inner.add_(carry[:, :, None]).reshape(B, K, P)


def _gaussian_table(means2d: Tensor, shape: Tensor, opacities: Tensor, features: Tensor) -> Tensor:
    """Per-Gaussian rows [N + 1, 2 + S + 1 + F + 1]: mean, shape, log opacity, features, 1 (the
    alpha channel); the last row is a transparent dummy that pads tiles."""
    log_o = torch.log(opacities.clamp_min(1e-30))[:, None]
    tab = torch.cat([means2d, shape, log_o, features, torch.ones_like(log_o)], -1)
    pad = tab.new_zeros(1, tab.shape[1])  # also when N = 0
    pad[0, 2 + shape.shape[1]] = math.log(1e-30)
    return torch.cat([tab, pad], 0)


class _RasterizeTiles(torch.autograd.Function):
    """Features [N, F] composited over tiles; backward recomputes each chunk (no stored per-pair
    tensors), so memory is O(chunk), not O(pairs × pixels)."""

    @staticmethod
    def forward(ctx, means2d, shape, opacities, features, background, bins: TileBins, mode: str, width: int,
                height: int):
        N, F = features.shape
        S = shape.shape[1]
        dtype, dev = features.dtype, features.device
        P = bins.tile ** 2
        q6, q3 = _tile_basis(bins.tile, dtype, dev)
        n_tiles = bins.tiles_x * bins.tiles_y
        out = torch.zeros(n_tiles, P, F + 1, dtype=dtype, device=dev)  # features and alpha
        tab = _gaussian_table(means2d, shape, opacities, features)
        used = torch.zeros_like(bins.count)  # per tile: Gaussians up to the last one with any weight
        for tiles, ids in _chunks(bins, bins.count):
            origin = _tile_origins(tiles, bins, dtype)
            t_run = torch.ones(len(tiles), P, dtype=dtype, device=dev)
            act = torch.arange(len(tiles), device=dev)
            k0, kb = 0, K_BLOCK
            while k0 < ids.shape[1]:  # front to back in growing blocks; drop finished tiles
                sub = ids[act, k0:k0 + kb]
                g = tab.index_select(0, sub.reshape(-1)).reshape(*sub.shape, -1)  # [B, kb, C]
                o_act = origin[act]
                log_a, _ = _log_alpha(mode, g[..., :2] - o_act[:, None], g[..., 2:2 + S], g[..., 2 + S], o_act, q6, q3)
                cw = _composite(log_a, t_run[act])
                tl = tiles[act]
                out[tl] += cw.w.transpose(1, 2) @ g[..., 3 + S:]
                last = torch.where(cw.w.sum(-1) > 0, torch.arange(1, g.shape[1] + 1, device=dev), 0).amax(-1)
                used[tl] = torch.where(last > 0, k0 + last, used[tl])
                t_run[act] = cw.t_live[:, -1]
                act = act[(t_run[act] > T_MIN).any(-1)]
                k0, kb = k0 + kb, 2 * kb
                if len(act) == 0:
                    break
        img, acc = out[..., :F], out[..., F]
        ctx.save_for_backward(means2d, shape, opacities, features, background, img, acc)
        ctx.bins, ctx.mode, ctx.size, ctx.used = bins, mode, (width, height), used
        img = img + (1.0 - acc)[..., None] * background
        return _untile(img, bins, width, height), _untile(acc[..., None], bins, width, height)

    @staticmethod
    def backward(ctx, g_img, g_alpha):
        means2d, shape, opacities, features, background, img_fg, acc = ctx.saved_tensors
        bins, mode = ctx.bins, ctx.mode
        N, F = features.shape
        S = shape.shape[1]
        dtype, dev = features.dtype, features.device
        q6, q3 = _tile_basis(bins.tile, dtype, dev)
        g_img = _tile(g_img, bins)  # [tiles, P, F]
        g_alpha = _tile(g_alpha, bins)[..., 0]  # [tiles, P]
        # per pixel: Σ_i w_i f_i·g (all Gaussians) and the background's share T_final (bg·g − g_α)
        t_final = 1.0 - acc
        total = (img_fg * g_img).sum(-1) + t_final * ((g_img * background).sum(-1) - g_alpha)  # [tiles, P]
        d_bg = (t_final[..., None] * g_img).sum((0, 1))
        tab = _gaussian_table(means2d, shape, opacities, features)
        d_tab = torch.zeros(N + 1, 2 + S + 1 + F, dtype=dtype, device=dev)  # d(mean, shape, log o, features)
        for tiles, ids in _chunks(bins, ctx.used, k_multiple=16):
            origin = _tile_origins(tiles, bins, dtype)
            gt = tab.index_select(0, ids.reshape(-1)).reshape(*ids.shape, -1)
            m, s, f = gt[..., :2] - origin[:, None], gt[..., 2:2 + S], gt[..., 3 + S:3 + S + F]
            log_a, cache = _log_alpha(mode, m, s, gt[..., 2 + S], origin, q6, q3)
            cw = _composite(log_a)
            g = g_img[tiles]  # [B, P, F]
            d_f = cw.w @ g  # [B, K, F]
            wgf = (f @ g.transpose(1, 2)).mul_(cw.w)  # [B, K, P] w_i f_i·g
            # dL/dα_i = T_i f_i·g − (Σ_{j>i} w_j f_j·g + T_final (bg·g − g_α)) / (1 − α_i); times α_i
            # it is dL/d log α_raw. Zero where the Gaussian is cut off (T_live = 0: sign 0), below
            # ALPHA_MIN (α = 0: ratio 0 and w 0) and clamped at ALPHA_MAX.
            rest = _cumsum_k(wgf).neg_().add_(total[tiles][:, None])
            d_la = wgf.sub_(rest.mul_(cw.ratio).mul_(cw.t_live.sign_()))
            if float(cw.a_raw.max()) > ALPHA_MAX:
                d_la.mul_(torch.threshold(cw.a_raw.neg().add_(ALPHA_MAX), 0.0, 0.0).sign_())
            if mode == "3dgs":
                mom = d_la @ q6.T  # [B, K, 6]
                dm, ds = _sigma_grad_3dgs(-mom, m, s)
                d_lo = mom[..., :1]
            else:
                dm, ds = _sigma_grad_2dgs(-d_la, m, origin, cache, q6, q3)
                d_lo = d_la.sum(-1, keepdim=True)
            # one scatter per chunk: the padding id N collects the dummy's gradients
            d_tab.index_add_(0, ids.reshape(-1), torch.cat([dm, ds, d_lo, d_f], -1).reshape(-1, d_tab.shape[1]))
        d_m, d_s, d_lo, d_f = d_tab[:N].split([2, S, 1, F], -1)
        d_o = torch.where(opacities > 1e-30, d_lo[:, 0] / opacities.clamp_min(1e-30), torch.zeros_like(opacities))
        return d_m, d_s, d_o, d_f, d_bg, None, None, None, None


def _sigma_grad_3dgs(S: Tensor, m: Tensor, conic: Tensor) -> tuple[Tensor, Tensor]:
    """From the moments S = Σ_p dσ·basis [B, K, 6] to d/d(local mean, conic), in closed form."""
    S0, S1, S2, S3, S4, S5 = S.unbind(-1)
    mx, my = m[..., 0], m[..., 1]
    a, b, c = conic.unbind(-1)
    dmx = S0 * (a * mx + b * my) - a * S1 - b * S2
    dmy = S0 * (b * mx + c * my) - b * S1 - c * S2
    da = 0.5 * S0 * mx * mx - S1 * mx + 0.5 * S3
    db = S0 * mx * my - S1 * my - S2 * mx + S4
    dc = 0.5 * S0 * my * my - S2 * my + 0.5 * S5
    return torch.stack([dmx, dmy], -1), torch.stack([da, db, dc], -1)


def _sigma_grad_2dgs(d_sigma: Tensor, m: Tensor, origin: Tensor, cache, q6: Tensor, q3: Tensor):
    cvec, inv_c2sq, s3, s2 = cache
    half = 0.5 * d_sigma
    d3 = (s2 - s3).sign_().clamp_min_(0.0).mul_(half)  # the ray–splat term where it is the smaller one
    d2 = half.sub_(d3)
    # σ₂ = 2 |m − l|²: gradient w.r.t. the local mean from moments
    S = d2 @ q6[:3].T  # [B, K, 3]
    dm = FILTER_2DGS * 2 * torch.stack([S[..., 0] * m[..., 0] - S[..., 1], S[..., 0] * m[..., 1] - S[..., 2]], -1)
    # σ₃ = (c0² + c1²) / (c2² + ε)
    g3 = (2 * d3).mul_(inv_c2sq)
    gc = torch.stack([cvec[:, :, 0] * g3, cvec[:, :, 1] * g3, -(s3 * g3).mul_(cvec[:, :, 2])], 2)
    dcoef = gc @ q3.T  # [B, K, 3(comp), 3(basis)] = d(A_loc, B, C) per component
    dA = dcoef[..., 0]
    dB = dcoef[..., 1] + origin[:, None, 0:1] * dA
    dC = dcoef[..., 2] + origin[:, None, 1:2] * dA
    return dm, torch.cat([dA, dB, dC], -1)


def _untile(x: Tensor, bins: TileBins, width: int, height: int) -> Tensor:
    """[tiles, P, F] → [H, W, F]."""
    T, F = bins.tile, x.shape[-1]
    img = x.reshape(bins.tiles_y, bins.tiles_x, T, T, F).permute(0, 2, 1, 3, 4)
    return img.reshape(bins.tiles_y * T, bins.tiles_x * T, F)[:height, :width]


def _tile(img: Tensor, bins: TileBins) -> Tensor:
    """[H, W, F] → [tiles, P, F] (zero padding outside the image)."""
    T = bins.tile
    H, W, F = img.shape
    pad = torch.zeros(bins.tiles_y * T, bins.tiles_x * T, F, dtype=img.dtype, device=img.device)
    pad[:H, :W] = img
    return pad.reshape(bins.tiles_y, T, bins.tiles_x, T, F).permute(0, 2, 1, 3, 4).reshape(-1, T * T, F)


# --------------------------------------------------------------------------- public interface


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colours: Tensor,
              w2c: Tensor, K: Tensor, width: int, height: int, *, mode: Mode = "3dgs",
              sh_degree: int | None = None, background: Tensor | None = None, extra: Tensor | None = None,
              near: float = 0.01, far: float = 1e10, backend: Backend = "auto", tile: int = 4) -> RenderOutput:
    """Render N Gaussians from one camera.

    means [N, 3], quats [N, 4] (w, x, y, z; normalised here), scales [N, 3] (linear, > 0; 2DGS uses
    the first two), opacities [N] in [0, 1], colours [N, 3] RGB or SH coefficients [N, K, 3] with
    `sh_degree` set (K ≥ (sh_degree+1)²), w2c [4, 4] (or [3, 4]), K [3, 3] pixels, background [3].
    `extra` [N, E]: more per-Gaussian features to composite (returned in `.extra`).
    """
    if backend == "auto":
        backend = "gsplat" if means.is_cuda and means.dtype == torch.float32 and gsplat_available() else "torch"
    if backend == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, colours, w2c, K, width, height, mode=mode,
                                 sh_degree=sh_degree, background=background, extra=extra, near=near, far=far)
    dtype, dev = means.dtype, means.device
    w2c = w2c.to(dtype)
    K = K.to(dtype)
    if background is None:
        background = torch.zeros(3, dtype=dtype, device=dev)
    project = project_3dgs if mode == "3dgs" else project_2dgs
    proj = project(means, quats, scales, opacities, w2c, K, width, height, near, far)
    if sh_degree is not None:
        colours = sh_to_colour(colours, means - camera_centres(w2c), sh_degree)
    feats = [colours, proj.depths[:, None]]
    if proj.normals is not None:
        feats.append(proj.normals)
    if extra is not None:
        feats.append(extra)
    features = torch.cat(feats, -1)
    bg = torch.cat([background.to(dtype), torch.zeros(features.shape[1] - 3, dtype=dtype, device=dev)])
    bins = bin_gaussians(proj, width, height, tile)
    img, alpha = _RasterizeTiles.apply(proj.means2d, proj.shape, opacities, features, bg, bins, mode, width, height)
    with torch.no_grad():
        bb = proj.bbox
        radii = torch.where(proj.valid, torch.maximum(bb[:, 1] - bb[:, 0], bb[:, 3] - bb[:, 2]) / 2,
                            torch.zeros_like(bb[:, 0]))
    normals = img[..., 4:7] if proj.normals is not None else None
    k = 4 + (3 if proj.normals is not None else 0)
    if mode == "3dgs":
        source, fn = proj.means2d, None
    else:  # ∂L/∂(x z, y z) of the disc centre, times z: pixels (what gsplat's 2DGS densifies on)
        z = proj.depths.detach()[:, None]
        source, fn = proj.M, (lambda g: g[:, :2, 2] * z)
    return RenderOutput(img[..., :3], img[..., 3:4], alpha, normals, img[..., k:] if extra is not None else None,
                        proj.means2d, radii, source, fn)


# --------------------------------------------------------------------------- gsplat (CUDA)


@functools.lru_cache(maxsize=1)
def gsplat_available() -> bool:
    """True when CUDA is there and gsplat imports (never imported on a CPU-only machine: it would
    try to JIT-build its kernels)."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def _rasterize_gsplat(means, quats, scales, opacities, colours, w2c, K, width, height, *, mode, sh_degree,
                      background, extra, near, far) -> RenderOutput:
    """gsplat's CUDA rasterizers behind our interface (float32 CUDA tensors)."""
    if not gsplat_available():
        raise RuntimeError("the gsplat backend needs CUDA and `pip install gsplat` (extra: worldstereo[cuda])")
    if means.dtype != torch.float32 or not means.is_cuda:
        raise ValueError("the gsplat backend takes float32 CUDA tensors")
    import gsplat

    dev = means.device
    view = torch.eye(4, dtype=torch.float32, device=dev)
    view[: w2c.shape[0]] = w2c.to(dev, torch.float32)
    Kg = K.to(dev, torch.float32).clone()
    Kg[0, 2] += 0.5  # gsplat samples pixel centres at +0.5
    Kg[1, 2] += 0.5
    E = 0 if extra is None else extra.shape[1]
    if E:  # extra channels ride along with the colours, so SH are evaluated here
        if sh_degree is not None:
            colours = sh_to_colour(colours, means - camera_centres(view), sh_degree)
            sh_degree = None
        colours = torch.cat([colours, extra.to(colours.dtype)], -1)
    if sh_degree is None:  # [1, N, D]: gsplat 1.5's 2DGS takes plain colours per camera only
        colours = colours[None]
    bg = None
    if background is not None:
        bg = torch.cat([background.to(dev, torch.float32), torch.zeros(E, device=dev)])[None]
    # packed=False: per-Gaussian [1, N, ...] outputs (packed ones are indexed by visible pairs)
    kw = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colours,
              viewmats=view[None], Ks=Kg[None], width=width, height=height, near_plane=near, far_plane=far,
              sh_degree=sh_degree, backgrounds=bg, render_mode="RGB+D", packed=False)
    if mode == "3dgs":
        img, alpha, info = gsplat.rasterization(**kw)
        normals = None
        source = info["means2d"]  # [1, N, 2], in the graph: retain_grad works on it (not on a view of it)
    else:
        img, alpha, normals, _surf, _dist, _median, info = gsplat.rasterization_2dgs(**kw)
        normals = normals[0] @ view[:3, :3].T  # gsplat returns world-frame normals; ours are camera-frame
        source = info["gradient_2dgs"]  # [1, N, 2] leaf that receives gsplat's 2DGS densification signal
    means2d = info["means2d"][0]
    radii = info["radii"][0]
    radii = radii.max(-1).values if radii.dim() == 2 else radii  # [N, 2] since gsplat 1.5, [N] before
    img = img[0]
    return RenderOutput(img[..., :3], img[..., -1:], alpha[0], normals, img[..., 3:3 + E] if E else None,
                        means2d, radii.float(), source, lambda g: g[0])
