"""The Gaussian model: raw parameters (what the optimiser sees) and their activations.

Parameters (N Gaussians, SH degree D, K = (D+1)²):
    means [N, 3]        world positions
    log_scales [N, 3]   scales = exp(log_scales); 2DGS uses the first two (the third stays tiny)
    quats [N, 4]        rotation (w, x, y, z), normalised when used
    opacity_logits [N]  opacities = sigmoid(opacity_logits)
    sh0 [N, 1, 3]       DC coefficient: rgb = SH_C0 · sh0 + 0.5
    shN [N, K-1, 3]     higher-order coefficients
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from worldstereo.render.gaussians import SH_C0

PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh0", "shN")


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """[N, 3] colours in [0, 1] → DC coefficients [N, 1, 3]."""
    return ((rgb - 0.5) / SH_C0)[:, None, :]


def knn_mean_distance(xyz: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance [N] of each point to its k nearest neighbours (initial Gaussian scale)."""
    from scipy.spatial import cKDTree

    if len(xyz) <= k:
        return np.full(len(xyz), 0.01, dtype=np.float32)
    d, _ = cKDTree(xyz).query(xyz, k=k + 1)
    return d[:, 1:].mean(1).astype(np.float32)


class GaussianModel(torch.nn.Module):
    """A ParameterDict of the raw parameters with activation helpers."""

    def __init__(self, params: dict[str, Tensor], sh_degree: int):
        super().__init__()
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(params[k]) for k in PARAM_NAMES})
        self.sh_degree = sh_degree

    @classmethod
    def from_points(cls, xyz: np.ndarray, rgb: np.ndarray, sh_degree: int, mode: str = "3dgs",
                    init_opacity: float = 0.1, scale_mult: float = 1.0) -> "GaussianModel":
        """Isotropic Gaussians at `xyz` [N, 3] with colours `rgb` [N, 3] in [0, 1]."""
        n = len(xyz)
        dist = np.clip(knn_mean_distance(xyz), 1e-7, None) * scale_mult
        log_s = torch.log(torch.from_numpy(dist))[:, None].repeat(1, 3)
        if mode == "2dgs":
            log_s[:, 2] = log_s[:, 0] - math.log(1000.0)  # flat disc; unused by the 2DGS rasterizer
        K = (sh_degree + 1) ** 2
        params = {
            "means": torch.from_numpy(np.asarray(xyz, np.float32)),
            "log_scales": log_s.float(),
            "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
            "opacity_logits": torch.full((n,), math.log(init_opacity / (1 - init_opacity))),
            "sh0": rgb_to_sh0(torch.from_numpy(np.asarray(rgb, np.float32))),
            "shN": torch.zeros(n, K - 1, 3),
        }
        return cls(params, sh_degree)

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def means(self) -> Tensor:
        return self.params["means"]

    @property
    def scales(self) -> Tensor:
        return torch.exp(self.params["log_scales"])

    @property
    def quats(self) -> Tensor:
        return self.params["quats"]

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.params["opacity_logits"])

    @property
    def sh(self) -> Tensor:
        """[N, K, 3] all SH coefficients."""
        return torch.cat([self.params["sh0"], self.params["shN"]], 1)

    def raw(self) -> dict[str, Tensor]:
        return {k: v.detach() for k, v in self.params.items()}

    def replace(self, params: dict[str, Tensor]) -> None:
        """Swap in new tensors (after densify / prune / load) as fresh Parameters."""
        for k in PARAM_NAMES:
            self.params[k] = torch.nn.Parameter(params[k].detach().contiguous())
