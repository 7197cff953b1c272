"""Reconstruct a consistent world from inconsistent frames (non-rigid alignment, CPU first).

    python reconstruct.py --scene scenes/my                              # after run_pipeline
    python reconstruct.py --input-video gen.mp4 --depth-npz results.npz  # any generated video
    python reconstruct.py --scene path/to/video_to_world_or_DA3_scene    # reads exports/npz/results.npz
    python reconstruct.py extensive --scene scenes/my                    # preset: fast (default) | extensive
"""

from __future__ import annotations

from pathlib import Path

from configs.reconstruct import ReconstructConfig, parse
from worldstereo import console
from worldstereo.errors import InputError, cli_entry


@cli_entry
def main(cfg: ReconstructConfig) -> None:
    from worldstereo.align.icp import check_icp_config
    from worldstereo.align.pipeline import run_reconstruct, stage_import
    from worldstereo.scene import SceneDir

    check_icp_config(cfg.icp)  # before the import writes anything
    timer = console.StageTimer("reconstruct")
    if cfg.input_video is not None:
        scene = SceneDir(cfg.scene or Path("scenes") / Path(cfg.input_video).stem)
        stage_import(scene, cfg.input_video, cfg.preprocess, cfg.depth_npz, cfg.cameras, force=cfg.force)
    elif cfg.scene is None:
        raise InputError(None, "pass --scene FOLDER or --input-video VIDEO --depth-npz results.npz")
    else:
        scene = SceneDir(cfg.scene)
    out = run_reconstruct(scene.root, cfg.preprocess, cfg.icp, cfg.deform, cfg.global_opt, cfg.inverse,
                          force=cfg.force, tensorboard=cfg.tensorboard)
    if out.skipped:
        timer.skipped(str(out.align_dir))
        return
    m = out.metrics
    far = "" if m.fuse is None or not m.fuse.removed_uncertain else (
        f" ({m.fuse.removed_uncertain} past the depth limit {m.fuse.depth_limit:.3g}: --icp.fuse.max-error)")
    timer.done(str(out.align_dir / "canonical.ply"),
               f"{len(m.frames)} frames, {m.points} points{far}, point-to-plane median "
               f"{m.p2plane_median_before:.3g} → {m.p2plane_median_after:.3g}, inverse round trip p95 "
               f"{m.inverse_round_trip.p95_max:.1e} of scene scale")


def entrypoint(argv: list[str] | None = None) -> None:
    main(parse(argv))


if __name__ == "__main__":
    entrypoint()
