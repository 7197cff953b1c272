"""Image losses and metrics for splat training: L1, SSIM, PSNR, 2DGS normal consistency and distortion,
and LPIPS only when its backbone weights are already on this machine."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.lru_cache(maxsize=4)
def _gauss_window(size: int, sigma: float, channels: int) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(a: Tensor, b: Tensor, size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM of two images [H, W, C] in [0, 1] (Gaussian window 11, σ 1.5; 'valid' borders)."""
    C = a.shape[-1]
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    w = _gauss_window(size, sigma, C).to(a)
    conv = lambda t: F.conv2d(t, w, groups=C)  # noqa: E731
    mx, my = conv(x), conv(y)
    sxx, syy, sxy = conv(x * x) - mx * mx, conv(y * y) - my * my, conv(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def psnr(a: Tensor, b: Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()


def depth_normals(depth: Tensor, alpha: Tensor, K: Tensor) -> Tensor:
    """Camera-frame normals [H, W, 3] from expected depth (depth/alpha), facing the camera (z < 0)."""
    H, W = depth.shape[:2]
    z = depth[..., 0] / alpha[..., 0].clamp_min(1e-6)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=z.dtype, device=z.device),
                            torch.arange(W, dtype=z.dtype, device=z.device), indexing="ij")
    pts = torch.stack([(xs - K[0, 2]) / K[0, 0] * z, (ys - K[1, 2]) / K[1, 1] * z, z], -1)
    dx = torch.zeros_like(pts)
    dy = torch.zeros_like(pts)
    dx[:, 1:-1] = pts[:, 2:] - pts[:, :-2]
    dy[1:-1] = pts[2:] - pts[:-2]
    n = -torch.cross(dx, dy, dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def normal_consistency(rendered_normals: Tensor, depth: Tensor, alpha: Tensor, K: Tensor) -> Tensor:
    """2DGS normal loss: mean of 1 − ⟨N_rendered, N_from_depth⟩ (N_rendered is alpha-weighted)."""
    n_surf = depth_normals(depth, alpha, K) * alpha.detach()
    return (1.0 - (rendered_normals * n_surf).sum(-1))[1:-1, 1:-1].mean()


def distortion(alpha: Tensor, depth: Tensor, depth_sq: Tensor) -> Tensor:
    """2DGS depth distortion Σ_{i<j} w_i w_j (z_i − z_j)² per pixel = A·D₂ − D², mean over pixels
    (A = Σ w, D = Σ w z, D₂ = Σ w z², all rendered)."""
    return (alpha * depth_sq - depth * depth).clamp_min(0).mean()


def lpips_if_available():
    """An LPIPS(alex) module when the `lpips` package and its backbone weights are already cached
    locally (nothing is downloaded), else None."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(hub.glob("alexnet-owt-*.pth")):
        return None
    try:
        import lpips  # noqa: F401  (needs torchvision)

        return lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception:
        return None
