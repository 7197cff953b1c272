"""Densify and prune: adaptive density control of 3DGS (Kerbl et al. 2023), our own implementation.

Hyperparameters (`DensifyConfig`) + explicit state (`DensifyState`) + pure operations on the
parameters and their Adam moments (`duplicate`, `split`, `remove`, `reset_opacity`).

    state = DensifyState.empty(len(model), device)
    out = rasterize(...); out.retain_densify_grad(); loss.backward()
    state.accumulate(out.densify_grad(), out.radii, width, height)
    refine(cfg, model, optimizers, state, step, scene_scale)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from worldstereo.render.gaussians import quat_to_rotmat
from worldstereo.splat.model import GaussianModel


@dataclass
class DensifyConfig:
    """When and how Gaussians are cloned, split, pruned and their opacities reset."""

    start: int = 500
    """First step at which Gaussians are densified / pruned."""
    stop: int = 15_000
    """No densification after this step (pruning of transparent Gaussians continues until then too)."""
    every: int = 100
    """Densify / prune every this many steps."""
    reset_every: int = 3000
    """Reset opacities to `2 · prune_opacity` every this many steps (0: never)."""
    grad_threshold: float = 0.0002
    """Average screen-space gradient norm (NDC units) above which a Gaussian is cloned or split."""
    small_scale: float = 0.01
    """Gaussians with max scale ≤ this × scene scale are cloned; larger ones are split in two."""
    prune_opacity: float = 0.005
    """Remove Gaussians whose opacity falls below this."""
    prune_scale: float = 0.1
    """After the first opacity reset, remove Gaussians larger than this × scene scale."""
    max_gaussians: int = 1_000_000
    """Never grow beyond this many Gaussians (the CPU's time per step grows with the count)."""


@dataclass
class DensifyState:
    """Per-Gaussian statistics accumulated between refinements."""

    grad2d: Tensor  # [N] Σ ‖∂L/∂μ₂‖ in NDC units
    count: Tensor  # [N] number of views where the Gaussian was visible

    @classmethod
    def empty(cls, n: int, device: torch.device | str = "cpu") -> "DensifyState":
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device))

    def accumulate(self, grad2d: Tensor | None, radii: Tensor, width: int, height: int) -> None:
        if grad2d is None:
            return
        vis = radii > 0
        g = grad2d.detach() * torch.tensor([width / 2.0, height / 2.0], dtype=grad2d.dtype, device=grad2d.device)
        self.grad2d[vis] += g[vis].norm(dim=-1).float()
        self.count[vis] += 1


def _edit(model: GaussianModel, optimizers: dict[str, torch.optim.Optimizer],
          fn_param: Callable[[str, Tensor], Tensor], fn_state: Callable[[str, Tensor], Tensor]) -> None:
    """Apply `fn_param` to every parameter and `fn_state` to its Adam moments, keeping them paired."""
    new = {k: fn_param(k, v.detach()) for k, v in model.params.items()}
    model.replace(new)
    for k, opt in optimizers.items():
        old_p = opt.param_groups[0]["params"][0]
        st = opt.state.pop(old_p, {})
        p = model.params[k]
        opt.param_groups[0]["params"] = [p]
        if st:
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    st[key] = fn_state(k, st[key])
            opt.state[p] = st


def duplicate(model, optimizers, mask: Tensor) -> None:
    """Append copies of the Gaussians in `mask` (their Adam moments start at zero)."""
    _edit(model, optimizers, lambda k, v: torch.cat([v, v[mask]]),
          lambda k, s: torch.cat([s, torch.zeros_like(s[mask])]))


def split(model, optimizers, mask: Tensor, mode: str) -> None:
    """Replace each Gaussian in `mask` by two samples from it, with scales / 1.6."""
    p = model.raw()
    sel = mask.nonzero().squeeze(1)
    scales = torch.exp(p["log_scales"][sel])
    if mode == "2dgs":
        scales = scales * torch.tensor([1.0, 1.0, 0.0], device=scales.device)
    R = quat_to_rotmat(p["quats"][sel])
    offs = torch.einsum("nij,bnj->bni", R, scales[None] * torch.randn(2, len(sel), 3, device=scales.device))  # [2, S, 3]
    new_means = (p["means"][sel][None] + offs).reshape(-1, 3)

    def fp(k, v):
        if k == "means":
            add = new_means
        elif k == "log_scales":
            add = (v[sel] - math.log(1.6)).repeat(2, 1)
        else:
            add = v[sel].repeat(2, *([1] * (v.dim() - 1)))
        return torch.cat([v[~mask], add])

    _edit(model, optimizers, fp,
          lambda k, s: torch.cat([s[~mask], torch.zeros_like(s[sel]).repeat(2, *([1] * (s.dim() - 1)))]))


def remove(model, optimizers, mask: Tensor) -> None:
    """Delete the Gaussians in `mask`."""
    _edit(model, optimizers, lambda k, v: v[~mask], lambda k, s: s[~mask])


def reset_opacity(model, optimizers, value: float) -> None:
    """Clamp opacities to at most `value` and clear their Adam moments."""
    logit = math.log(value / (1 - value))

    def fp(k, v):
        return v.clamp_max(logit) if k == "opacity_logits" else v

    _edit(model, optimizers, fp, lambda k, s: torch.zeros_like(s) if k == "opacity_logits" else s)


def refine(cfg: DensifyConfig, model: GaussianModel, optimizers, state: DensifyState, step: int,
           scene_scale: float, mode: str) -> tuple[DensifyState, dict[str, int]]:
    """One refinement at `step` (no-op off schedule). Returns the new state and counts of what changed."""
    stats = {}
    if step < cfg.start or step > cfg.stop or step % cfg.every != 0:
        return state, stats
    with torch.no_grad():
        avg = state.grad2d / state.count.clamp_min(1)
        high = avg > cfg.grad_threshold
        room = cfg.max_gaussians - len(model)
        if room <= 0:
            high[:] = False
        elif int(high.sum()) > room:  # keep the largest gradients
            thr = torch.topk(avg, room).values[-1]
            high = high & (avg >= thr)
        max_scale = torch.exp(model.params["log_scales"][:, :2 if mode == "2dgs" else 3]).amax(-1)
        small = max_scale <= cfg.small_scale * scene_scale
        dup, spl = high & small, high & ~small
        duplicate(model, optimizers, dup)
        spl = torch.cat([spl, torch.zeros(int(dup.sum()), dtype=torch.bool, device=spl.device)])
        split(model, optimizers, spl, mode)
        op = torch.sigmoid(model.params["opacity_logits"])
        prune = op < cfg.prune_opacity
        if cfg.reset_every and step > cfg.reset_every:
            scale = torch.exp(model.params["log_scales"][:, :2 if mode == "2dgs" else 3]).amax(-1)
            prune = prune | (scale > cfg.prune_scale * scene_scale)
        if bool(prune.all()):
            prune[:] = False
        remove(model, optimizers, prune)
        stats = {"cloned": int(dup.sum()), "split": int(spl.sum()), "pruned": int(prune.sum())}
        if cfg.reset_every and step % cfg.reset_every == 0:
            reset_opacity(model, optimizers, 2 * cfg.prune_opacity)
    return DensifyState.empty(len(model), state.grad2d.device), stats
