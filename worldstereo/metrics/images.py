"""Image metrics: PSNR, SSIM (Gaussian window 11, σ 1.5), LPIPS when its weights are on disk.

- PSNR = 10 log10(L² / MSE), L = data range (255 for uint8, 1 for float images); inf when equal.
- SSIM (Wang et al. 2004) with Gaussian-weighted local statistics (σ = 1.5, truncated at 3.5σ →
  11×11 window), population covariances, C1 = (0.01 L)², C2 = (0.03 L)²; the mean SSIM over the
  image without a 5-pixel border (where the window is incomplete), averaged over channels. This
  equals skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=L, channel_axis=-1).
- LPIPS is computed only when the `lpips` package and its backbone weights are already on disk;
  otherwise `lpips_or_none` returns None and tables print "n/a" (never 0).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter


def _range(a: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    return 255.0 if a.dtype == np.uint8 else 1.0


def psnr(a: np.ndarray, b: np.ndarray, data_range: float | None = None, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) of images [H, W(, C)]; `mask` [H, W] restricts the mean to its pixels."""
    L = _range(a, data_range)
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        d = d[mask]
    mse = float(d.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(L * L / mse))


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM [H, W] of single-channel images (Gaussian weights, population statistics)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    f = lambda x: gaussian_filter(x, sigma=sigma, truncate=3.5, mode="reflect")  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    var_a = f(a * a) - mu_a**2
    var_b = f(b * b) - mu_b**2
    cov = f(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None, sigma: float = 1.5) -> float:
    """Mean SSIM of images [H, W] or [H, W, C] (channels averaged), 5-pixel border excluded."""
    L = _range(a, data_range)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    pad = int(3.5 * sigma + 0.5)  # window radius: 5 for σ = 1.5 (11-pixel window)
    vals = []
    for c in range(a.shape[-1]):
        m = ssim_map(a[..., c], b[..., c], L, sigma)
        vals.append(m[pad:m.shape[0] - pad, pad:m.shape[1] - pad].mean())
    return float(np.mean(vals))


# --------------------------------------------------------------------------- LPIPS (optional)


def lpips_status() -> str | None:
    """None when LPIPS can run offline here, else the reason it cannot (for the report)."""
    try:
        import lpips  # noqa: F401
    except Exception as e:  # ImportError, or torchvision missing inside it
        return f"lpips package not importable ({e.__class__.__name__})"
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    if not hub.is_dir() or not any(p.name.startswith(("alexnet", "vgg")) for p in hub.iterdir()):
        return f"backbone weights not found in {hub} (LPIPS would download them)"
    return None


def lpips_or_none(a: np.ndarray, b: np.ndarray, net: str = "alex") -> float | None:
    """LPIPS distance of uint8 RGB images [H, W, 3], or None when unavailable offline."""
    if lpips_status() is not None:
        return None
    import lpips
    import torch

    model = lpips.LPIPS(net=net, verbose=False)
    to_t = lambda x: torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]  # noqa: E731
    with torch.no_grad():
        return float(model(to_t(a), to_t(b)).item())
