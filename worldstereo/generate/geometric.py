"""The `geometric` generator: cache render + reference detail + hole filling, on any CPU, no weights.

Per target frame:
  1. coarse: render the working cache (z-buffered splats) → colour, depth, hole mask;
  2. fine: replace colour where the retrieved reference sees the same 3D point (pointmap
     correspondence + visibility test), so detail comes from a real view, not from splats;
  3. holes: depth by background propagation (a hole takes the farthest nearby depth, as
     disocclusions reveal background), colour by inpainting (Telea);
  4. the synthesised pixels enter the working cache at once, so later frames of this trajectory
     see (and agree with) what earlier frames invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from worldstereo.console import progress
from worldstereo.generate.base import GeneratedFrames, GenerationRequest
from worldstereo.generate.transfer import transfer_colour
from worldstereo.memory.cache import points_from_view, violates_free_space


@dataclass
class GeometricConfig:
    """The default CPU backend."""

    transfer_depth_tol: float = 0.03
    """Relative depth agreement for a reference pixel to count as seeing the same point."""
    filled_conf: float = 0.3
    """Confidence of synthesised (hole-filled) pixels; observed pixels get the cache's."""
    inpaint_radius: int = 3
    """Telea inpainting radius in pixels."""
    splat_scale: float = 1.0
    """Splat half-width relative to a point's projected footprint."""


def fill_depth_background(depth_m: np.ndarray, hole: np.ndarray, fallback: float, max_iters: int = 512) -> np.ndarray:
    """Fill holes by repeatedly taking the farthest valid depth in a 3×3 neighbourhood.

    Disocclusions show what lies behind the occluder, so the background (max depth) side is the
    right one to extend; the foreground would grow fat silhouettes.
    """
    d = np.where(hole, 0.0, depth_m).astype(np.float32)
    todo = hole.copy()
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(max_iters):
        if not todo.any():
            break
        grown = cv2.dilate(d, kernel)
        newly = todo & (grown > 0)
        if not newly.any():
            break
        d[newly] = grown[newly]
        todo &= ~newly
    d[todo] = fallback
    return d


class GeometricGenerator:
    name = "geometric"

    def __init__(self, cfg: GeometricConfig = GeometricConfig()):
        self.cfg = cfg

    def generate(self, req: GenerationRequest, progress_desc: str = "generate") -> GeneratedFrames:
        cfg = self.cfg
        cams = req.trajectory.cameras
        H, W = req.trajectory.height, req.trajectory.width
        N = len(cams)
        work = req.cache
        refs = {e.id: e for e in req.bank.entries}
        ref_cache: dict[int, tuple] = {}
        rgb_out = np.zeros((N, H, W, 3), np.uint8)
        depth_out = np.zeros((N, H, W), np.float32)
        conf_out = np.zeros((N, H, W), np.float32)
        for j in progress(range(N), desc=progress_desc, total=N):
            cam = cams[j]
            r = work.render(cam, splat_scale=cfg.splat_scale)
            rgb = r.rgb.copy()
            hole = r.hole
            ref = refs.get(req.references[j].ref_id) if req.references else None
            if ref is not None:
                if ref.id not in ref_cache:
                    ref_cache[ref.id] = (req.bank.image(ref), req.bank.depth(ref), ref.camera)
                ref_rgb, ref_depth, ref_cam = ref_cache[ref.id]
                colour, visible = transfer_colour(cam, r.depth, ~hole, ref_cam, ref_rgb, ref_depth, cfg.transfer_depth_tol)
                rgb[visible] = colour[visible]
            depth = fill_depth_background(r.depth, hole, fallback=req.pivot_depth)
            if hole.any():
                rgb = cv2.inpaint(rgb, hole.astype(np.uint8), cfg.inpaint_radius, cv2.INPAINT_TELEA)
            conf = np.where(hole, cfg.filled_conf, 1.0).astype(np.float32)
            if not hole.all():
                conf[~hole] = np.minimum(1.0, work.conf[r.index[~hole]])
            new = points_from_view(rgb, depth, cam, cfg.filled_conf, req.step, j, mask=hole, edge_rel_thresh=None)
            if req.observed is not None and len(new):
                # a guess that sits in space the input view saw empty is wrong: keep the pixel,
                # mark it unreliable (conf 0), and keep it out of the cache
                bad = violates_free_space(new.xyz, *req.observed)
                yy, xx = np.nonzero(hole)
                conf[yy[bad], xx[bad]] = 0.0
                new = new.select(~bad)
            work = work.concat(new)
            rgb_out[j], depth_out[j], conf_out[j] = rgb, depth, conf
        return GeneratedFrames(rgb_out, depth_out, conf_out, self.name,
                               notes="cache render + reference transfer + background/inpaint hole filling")
