"""Slow, readable reference of the Gaussian rasterizer: every pixel against every Gaussian.

The test oracle for `worldstereo.render.gaussians.rasterize` (outputs, and gradients through
autograd). Written independently of the fast path: no tiles, no bounding boxes, no closed-form
moments; 2DGS solves the ray–disc intersection as a 2×2 linear system per pixel. It omits the 3DGS
Jacobian clamp outside 1.3× the field of view, so compare on Gaussians inside the view.
Use for a few dozen Gaussians on small images only: memory is O(H·W·N).
"""

from __future__ import annotations

import torch
from torch import Tensor

from worldstereo.render.camera import camera_centres
from worldstereo.render.gaussians import (ALPHA_MAX, ALPHA_MIN, EPS2D, FILTER_2DGS, T_MIN, quat_to_rotmat,
                                          sh_to_colour)


def rasterize_ref(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colours: Tensor,
                  w2c: Tensor, K: Tensor, width: int, height: int, *, mode: str = "3dgs",
                  sh_degree: int | None = None, background: Tensor | None = None, near: float = 0.01):
    """Returns dict colour [H,W,3], depth [H,W,1], alpha [H,W,1], normals [H,W,3] (2DGS)."""
    dtype = means.dtype
    w2c, K = w2c.to(dtype), K.to(dtype)
    R, t = w2c[:3, :3], w2c[:3, 3]
    pc = means @ R.T + t  # [N, 3] camera frame
    if sh_degree is not None:
        colours = sh_to_colour(colours, means - camera_centres(w2c), sh_degree)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)  # [HW, 1] pixel centres at integers
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    z = pc[:, 2]
    mu = fx * pc[:, 0] / z + cx, fy * pc[:, 1] / z + cy  # [N] each: projected centres
    Rq = quat_to_rotmat(quats)
    normals = None
    if mode == "3dgs":
        sigma = _sigma_3dgs(pc, z, mu, Rq, scales, R, K, px, py)
    else:
        sigma = _sigma_2dgs(pc, mu, Rq, scales, R, K, px, py)
        n = Rq[:, :, 2] @ R.T
        normals = n * torch.where((n * pc).sum(-1, keepdim=True) > 0, -1.0, 1.0)
    a_raw = opacities * torch.exp(-sigma)  # [HW, N]
    alpha = torch.where(a_raw < ALPHA_MIN, torch.zeros_like(a_raw), a_raw.clamp_max(ALPHA_MAX))
    alpha = torch.where((z > near)[None], alpha, torch.zeros_like(alpha))
    return _composite(alpha, z, colours, normals, background, width, height)


def _sigma_3dgs(pc: Tensor, z: Tensor, mu: tuple[Tensor, Tensor], Rq: Tensor, scales: Tensor, R: Tensor, K: Tensor,
                px: Tensor, py: Tensor) -> Tensor:
    """σ [HW, N] = ½ dᵀ Σ₂⁻¹ d of each pixel against each projected Gaussian (EWA, + low-pass)."""
    fx, fy = K[0, 0], K[1, 1]
    mu_x, mu_y = mu
    cov3 = (Rq * scales[:, None, :] ** 2) @ Rq.transpose(1, 2)  # R S² Rᵀ
    covc = R @ cov3 @ R.T
    zero = torch.zeros_like(z)
    J = torch.stack([torch.stack([fx / z, zero, -fx * pc[:, 0] / z ** 2], -1),
                     torch.stack([zero, fy / z, -fy * pc[:, 1] / z ** 2], -1)], 1)  # [N, 2, 3]
    cov2 = J @ covc @ J.transpose(1, 2) + EPS2D * torch.eye(2, dtype=pc.dtype)
    inv = torch.linalg.inv(cov2)  # [N, 2, 2]
    dx, dy = px - mu_x, py - mu_y  # [HW, N]
    return 0.5 * (inv[:, 0, 0] * dx * dx + 2 * inv[:, 0, 1] * dx * dy + inv[:, 1, 1] * dy * dy)


def _sigma_2dgs(pc: Tensor, mu: tuple[Tensor, Tensor], Rq: Tensor, scales: Tensor, R: Tensor, K: Tensor,
                px: Tensor, py: Tensor) -> Tensor:
    """σ [HW, N] = ½ min(u² + v², screen filter) with (u, v) where each pixel's ray meets each disc."""
    mu_x, mu_y = mu
    tu = (Rq[:, :, 0] * scales[:, :1]) @ R.T
    tv = (Rq[:, :, 1] * scales[:, 1:2]) @ R.T
    M = K @ torch.stack([tu, tv, pc], -1)  # [N, 3, 3]: (xz, yz, z) = M (u, v, 1)
    # per pixel: (M0 − x M2)·(u, v, 1) = 0 and (M1 − y M2)·(u, v, 1) = 0
    r0 = M[None, :, 0] - px[..., None] * M[None, :, 2]  # [HW, N, 3]
    r1 = M[None, :, 1] - py[..., None] * M[None, :, 2]
    A = torch.stack([r0[..., :2], r1[..., :2]], -2)  # [HW, N, 2, 2]
    rhs = -torch.stack([r0[..., 2], r1[..., 2]], -1)  # [HW, N, 2]
    det = A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]
    u = (A[..., 1, 1] * rhs[..., 0] - A[..., 0, 1] * rhs[..., 1]) / det
    v = (A[..., 0, 0] * rhs[..., 1] - A[..., 1, 0] * rhs[..., 0]) / det
    s3 = u * u + v * v
    s2 = FILTER_2DGS * ((px - mu_x) ** 2 + (py - mu_y) ** 2)
    return 0.5 * torch.minimum(s3, s2)


def _composite(alpha: Tensor, z: Tensor, colours: Tensor, normals: Tensor | None, background: Tensor | None,
               width: int, height: int) -> dict[str, Tensor]:
    """Front-to-back compositing of alpha [HW, N] in depth order, each pixel stopping before T < T_MIN."""
    dtype = alpha.dtype
    order = torch.argsort(z.detach())
    T = torch.ones(alpha.shape[0], dtype=dtype)
    done = torch.zeros(alpha.shape[0], dtype=torch.bool)
    C = torch.zeros(alpha.shape[0], 3, dtype=dtype)
    D = torch.zeros(alpha.shape[0], 1, dtype=dtype)
    Nrm = torch.zeros(alpha.shape[0], 3, dtype=dtype)
    for i in order.tolist():  # front to back
        a = alpha[:, i]
        t_next = T * (1 - a)
        done = done | (t_next <= T_MIN)
        w = torch.where(done, torch.zeros_like(a), a * T)
        C = C + w[:, None] * colours[i]
        D = D + w[:, None] * z[i]
        if normals is not None:
            Nrm = Nrm + w[:, None] * normals[i]
        T = torch.where(done, T, t_next)
    bg = torch.zeros(3, dtype=dtype) if background is None else background.to(dtype)
    C = C + T[:, None] * bg
    out = {"colour": C.reshape(height, width, 3), "depth": D.reshape(height, width, 1),
           "alpha": (1 - T).reshape(height, width, 1)}
    if normals is not None:
        out["normals"] = Nrm.reshape(height, width, 3)
    return out
