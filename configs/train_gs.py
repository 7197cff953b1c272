"""train_gs.py configuration: Gaussian-splat training (3DGS / 2DGS) with presets fast / extensive.

    python train_gs.py --scene scenes/my                      # preset "fast" (the default)
    python train_gs.py extensive --scene scenes/my --renderer both
    python train_gs.py --scene scenes/my --train.iterations 5000 --train.data.long-side 384
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import tyro

from configs.presets import parse_with_presets

from worldstereo.splat.strategy import DensifyConfig
from worldstereo.splat.trainer import DataConfig, LossConfig, OutputConfig, TrainerConfig


@dataclass
class TrainGSConfig:
    """Fit Gaussian splats to a scene's frames; outputs under <scene>/gs_<renderer>/."""

    scene: Path
    """Scene folder (with exports/npz/results.npz and cache.ply or align/canonical.ply)."""
    renderer: Literal["3dgs", "2dgs", "both"] = "3dgs"
    """3DGS (volumetric ellipsoids), 2DGS (surface discs, normals) or both, one after the other."""
    resume: bool = False
    """Continue from the newest checkpoint under gs_<renderer>/checkpoints."""
    force: bool = False
    """Train even when scene.json says this stage is done with the same config."""
    train: TrainerConfig = field(default_factory=TrainerConfig)
    """Training (schedule, losses, densification, data, outputs)."""


def _fast() -> TrainGSConfig:
    """3000 steps at long side 256, SH degree 3, ≤ 40k Gaussians: about 11 minutes on a 2-core CPU (3DGS)."""
    return TrainGSConfig(scene=tyro.MISSING, train=TrainerConfig(
        iterations=3000, sh_every=500,
        densify=DensifyConfig(start=300, stop=2000, every=100, reset_every=0, max_gaussians=40_000),
        loss=LossConfig(normal_start=1000, distortion_start=500),
        data=DataConfig(long_side=256, max_init_points=20_000),
        output=OutputConfig(checkpoint_every=500)))


def _extensive() -> TrainGSConfig:
    """15000 steps at long side 512, full densification schedule (a GPU, or patience)."""
    return TrainGSConfig(scene=tyro.MISSING, renderer="both", train=TrainerConfig(
        iterations=15_000, sh_every=1000,
        densify=DensifyConfig(start=500, stop=10_000, every=100, reset_every=3000, max_gaussians=1_000_000),
        loss=LossConfig(normal_start=7000, distortion_start=3000),
        data=DataConfig(long_side=512, max_init_points=200_000)))


PRESETS = {
    "fast": ("3000 steps at long side 256; minutes on a CPU (default).", _fast()),
    "extensive": ("15000 steps at long side 512, 2DGS and 3DGS.", _extensive()),
}


def parse(argv: Sequence[str] | None = None) -> TrainGSConfig:
    """Parse train_gs.py's command line: `[fast|extensive] --flags` (fast when the preset is left out)."""
    return parse_with_presets(PRESETS, TrainGSConfig.__doc__ or "", argv)
