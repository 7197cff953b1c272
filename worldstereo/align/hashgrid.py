"""Multiresolution hash encoding (Müller et al. 2022) in plain torch, and a hash grid + MLP
displacement field. Uses tinycudann when CUDA and the package are both there (lazy import).

Level l has resolution N_l = floor(N_min · b^l), b = exp((ln N_max − ln N_min) / (L − 1)), and a
table of T = 2^log2_T feature vectors [T, F]. A point x ∈ [0, 1]³ looks up the 8 corners of its
cell, hashed as (i·1 ⊕ j·2654435761 ⊕ k·805459861) mod T (or indexed densely when the level's
(N_l + 1)³ nodes fit in T), and blends them trilinearly. The output concatenates all levels:
[N, L·F].

>>> enc = HashGrid(levels=8, features=2, log2_table=14, base_res=4, max_res=64)
>>> feats = enc(torch.rand(1000, 3))      # [1000, 16]
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

_PRIMES = (1, 2654435761, 805459861)
_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.long)


def level_resolutions(levels: int, base_res: int, max_res: int) -> list[int]:
    b = math.exp((math.log(max_res) - math.log(base_res)) / max(levels - 1, 1))
    return [int(math.floor(base_res * b**l)) for l in range(levels)]


def _index(corner: torch.Tensor, res: int, table: int) -> torch.Tensor:
    """Table index [...] of integer corners [..., 3] at one level."""
    if (res + 1) ** 3 <= table:
        return (corner[..., 0] * (res + 1) + corner[..., 1]) * (res + 1) + corner[..., 2]
    h = corner[..., 0] * _PRIMES[0]
    h = torch.bitwise_xor(h, corner[..., 1] * _PRIMES[1])
    h = torch.bitwise_xor(h, corner[..., 2] * _PRIMES[2])
    return torch.remainder(h, table)


class HashGrid(nn.Module):
    """Hash encoding of points in [0, 1]³ → features [N, levels·features]."""

    def __init__(self, levels: int = 16, features: int = 2, log2_table: int = 19, base_res: int = 16,
                 max_res: int = 2048, seed: int = 0):
        super().__init__()
        self.resolutions = level_resolutions(levels, base_res, max_res)
        self.table_size = 2**log2_table
        self.features = features
        gen = torch.Generator().manual_seed(seed)
        self.tables = nn.Parameter((torch.rand(levels, self.table_size, features, generator=gen) * 2 - 1) * 1e-4)

    @property
    def out_dim(self) -> int:
        return len(self.resolutions) * self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [N, 3] in [0, 1]
        x = x.clamp(0.0, 1.0)
        corners = _CORNERS.to(x.device)
        out = []
        for lvl, res in enumerate(self.resolutions):
            pos = x * res
            base = torch.floor(pos).long().clamp(max=res - 1)
            frac = pos - base  # [N, 3]
            corner = base[:, None, :] + corners[None]  # [N, 8, 3]
            idx = _index(corner, res, self.table_size)  # [N, 8]
            w = torch.prod(torch.where(corners[None].bool(), frac[:, None, :], 1 - frac[:, None, :]), dim=-1)
            out.append(torch.einsum("nk,nkf->nf", w, self.tables[lvl][idx]))
        return torch.cat(out, dim=-1)


def hashgrid_reference(enc: HashGrid, x: np.ndarray) -> np.ndarray:
    """Slow per-point loop with the same math as `HashGrid.forward`: the test oracle."""
    tables = enc.tables.detach().cpu().numpy()
    out = np.zeros((len(x), enc.out_dim))
    for n, p in enumerate(np.clip(x, 0, 1)):
        for lvl, res in enumerate(enc.resolutions):
            pos = p * res
            base = np.minimum(np.floor(pos).astype(np.int64), res - 1)
            frac = pos - base
            acc = np.zeros(enc.features)
            for c in _CORNERS.numpy():
                cell = base + c
                if (res + 1) ** 3 <= enc.table_size:
                    i = (cell[0] * (res + 1) + cell[1]) * (res + 1) + cell[2]
                else:
                    i = (int(cell[0]) * _PRIMES[0]) ^ (int(cell[1]) * _PRIMES[1]) ^ (int(cell[2]) * _PRIMES[2])
                    i %= enc.table_size
                w = np.prod(np.where(c == 1, frac, 1 - frac))
                acc += w * tables[lvl, i]
            out[n, lvl * enc.features:(lvl + 1) * enc.features] = acc
    return out


def _tcnn_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return False
    return True


_MLP_SEED_OFFSET = 2**32  # the MLP's stream differs from every hash table's (seeded by frame index)


def _seeded_linear_init(layer: nn.Linear, gen: torch.Generator) -> None:
    """torch's default nn.Linear initialisation, drawn from `gen` instead of the global generator
    (whose seed differs in every process, so the same run would give different fields)."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.bias.uniform_(-bound, bound, generator=gen)


class HashDeformField(nn.Module):
    """Displacement δ(x) [N, 3] = MLP(hash(normalise(x))), zero at initialisation.

    `lo`, `hi` [3] bound the camera-space box that maps to [0, 1]³.
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, levels: int, features: int, log2_table: int,
                 base_res: int, max_res: int, hidden: int, seed: int = 0):
        super().__init__()
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float32))
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float32))
        self.use_tcnn = _tcnn_available()
        if self.use_tcnn:  # pragma: no cover - needs CUDA
            import tinycudann as tcnn

            self.encoding = tcnn.Encoding(3, {
                "otype": "HashGrid", "n_levels": levels, "n_features_per_level": features,
                "log2_hashmap_size": log2_table, "base_resolution": base_res,
                "per_level_scale": math.exp((math.log(max_res) - math.log(base_res)) / max(levels - 1, 1)),
            })
            enc_dim = self.encoding.n_output_dims
        else:
            self.encoding = HashGrid(levels, features, log2_table, base_res, max_res, seed=seed)
            enc_dim = self.encoding.out_dim
        self.mlp = nn.Sequential(nn.Linear(enc_dim, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        _seeded_linear_init(self.mlp[0], torch.Generator().manual_seed(seed + _MLP_SEED_OFFSET))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.scale = nn.Parameter(torch.tensor(1.0), requires_grad=False)  # output scale (metres)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3] camera space → [N, 3]
        u = ((x.float() - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        feats = self.encoding(u).float()
        return (self.mlp(feats) * self.scale).to(x.dtype)
