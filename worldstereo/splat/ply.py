"""splats.ply in the INRIA 3DGS layout, which common 3DGS viewers (SuperSplat, antimatter15, viser,
gsplat's examples) load.

Vertex fields, float32, in this order (K = (D+1)² SH coefficients per channel):
    x y z  nx ny nz  f_dc_0..2  f_rest_0..3(K−1)−1  opacity  scale_0..2  rot_0..3
f_rest is channel-major: all K−1 coefficients of red, then green, then blue (f_rest[c·(K−1) + k]).
opacity is the logit, scale_i the log-scale, rot the quaternion w, x, y, z (not normalised).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldstereo.errors import InputError
from worldstereo.io.ply import read_ply, write_ply


def splat_field_names(sh_degree: int) -> list[str]:
    """The INRIA field names in order for SH degree `sh_degree`."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)] + ["opacity", "scale_0", "scale_1", "scale_2"]
            + [f"rot_{i}" for i in range(4)])


def write_splats_ply(path: str | Path, params: dict[str, torch.Tensor]) -> None:
    """Write raw model parameters (see worldstereo.splat.model) atomically as an INRIA PLY."""
    p = {k: v.detach().cpu().float().numpy() for k, v in params.items()}
    n = len(p["means"])
    shN = p["shN"]  # [N, K-1, 3] → channel-major [N, 3, K-1] → [N, 3(K-1)]
    rest = shN.transpose(0, 2, 1).reshape(n, -1)
    sh_degree = int(round(np.sqrt(shN.shape[1] + 1))) - 1
    cols = [p["means"], np.zeros((n, 3), np.float32), p["sh0"][:, 0, :], rest, p["opacity_logits"][:, None],
            p["log_scales"], p["quats"]]
    data = np.concatenate(cols, 1).astype(np.float32)
    names = splat_field_names(sh_degree)
    write_ply(path, {name: data[:, i] for i, name in enumerate(names)})


def read_splats_ply(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an INRIA-layout PLY back into raw parameters (means, log_scales, quats, opacity_logits, sh0, shN)."""
    v = read_ply(path)
    names = v.dtype.names or ()
    missing = [k for k in ("x", "f_dc_0", "opacity", "scale_0", "rot_0") if k not in names]
    if missing:
        raise InputError(path, f"not a Gaussian-splat PLY (no {', '.join(missing)} field)")
    n_rest = sum(1 for k in names if k.startswith("f_rest_"))
    if n_rest % 3:
        raise InputError(path, f"{n_rest} f_rest fields is not a multiple of 3")
    col = lambda k: torch.from_numpy(np.ascontiguousarray(v[k], dtype=np.float32))  # noqa: E731
    stack = lambda ks: torch.stack([col(k) for k in ks], -1)  # noqa: E731
    n = len(v)
    rest = stack([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else torch.zeros(n, 0)
    scale_names = [k for k in ("scale_0", "scale_1", "scale_2") if k in names]
    log_scales = stack(scale_names)
    if log_scales.shape[1] == 2:  # 2DGS files with two scales: add a thin third axis
        log_scales = torch.cat([log_scales, log_scales.min(1, keepdim=True).values - 6.9], 1)
    return {
        "means": stack(["x", "y", "z"]),
        "log_scales": log_scales,
        "quats": stack([f"rot_{i}" for i in range(4)]),
        "opacity_logits": col("opacity"),
        "sh0": stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
        "shN": rest.reshape(n, 3, n_rest // 3).transpose(1, 2).contiguous(),
    }
