"""Gaussian splatting (3DGS / 2DGS) on a scene: own CPU rasterizer, gsplat on CUDA.

    python train_gs.py --scene scenes/my --renderer 3dgs        # or 2dgs, or both
    python train_gs.py --scene scenes/my --resume               # continue from the last checkpoint
    python train_gs.py extensive --scene scenes/my              # preset: fast (default) | extensive
"""

from __future__ import annotations

from configs.train_gs import TrainGSConfig, parse
from worldstereo.console import StageTimer
from worldstereo.errors import cli_entry
from worldstereo.scene import SceneDir
from worldstereo.splat.trainer import run_stage


def main(cfg: TrainGSConfig) -> None:
    scene = SceneDir(cfg.scene)
    scene.load()  # one-line error when the folder is not a scene
    scene.check_writable()
    modes = ["3dgs", "2dgs"] if cfg.renderer == "both" else [cfg.renderer]
    for mode in modes:
        timer = StageTimer(f"train_gs {mode}")
        res = run_stage(scene, mode, cfg.train, resume=cfg.resume, force=cfg.force)
        if res is None:
            timer.skipped(str(scene.gs_dir(mode)))
            continue
        tr, ho = res.metrics.train, res.metrics.heldout
        what = f"{res.n_gaussians} Gaussians, PSNR train {tr.psnr if tr else float('nan'):.2f} dB"
        if ho:
            what += f", held-out {ho.psnr:.2f} dB"
        timer.done(str(res.out_dir), what)


if __name__ == "__main__":
    cli_entry(main)(parse())
