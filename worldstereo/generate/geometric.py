"""The `geometric` generator: cache render + reference detail + hole filling, on any CPU, no weights.

Per target frame:
  1. coarse: render the working cache (z-buffered splats) → colour, depth, hole mask;
  2. fine: replace colour where the retrieved reference sees the same 3D point (pointmap
     correspondence + visibility test), so detail comes from a real view, not from splats;
  3. holes (generate/holefill.py): depth from the background side of each disocclusion —
     dominant planes of the input view extended behind occluders, else a harmonic fill of
     inverse depth from the far rim, else a low-confidence guess; colour from the same rim;
     confidence by provenance (observed > plane > interpolated > extrapolated);
  4. the synthesised pixels enter the working cache at once, so later frames of this trajectory
     see (and agree with) what earlier frames invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldstereo.console import progress
from worldstereo.generate.base import GeneratedFrames, GenerationRequest
from worldstereo.generate.holefill import KIND_OBSERVED, confidence_of, fill_holes, fit_planes
from worldstereo.generate.transfer import transfer_colour
from worldstereo.memory.cache import points_from_view, violates_free_space


@dataclass
class GeometricConfig:
    """The default CPU backend."""

    transfer_depth_tol: float = 0.03
    """Relative depth agreement for a reference pixel to count as seeing the same point."""
    inpaint_radius: int = 3
    """Telea radius for holes without a background rim (their colour comes from the far side only)."""
    max_planes: int = 4
    """Dominant planes fitted (RANSAC) to the input view's points and extended into holes."""
    splat_scale: float = 1.0
    """Splat half-width relative to a point's projected footprint."""


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
        planes = fit_planes(work.xyz[work.step == 0], max_planes=cfg.max_planes)
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
            fill = fill_holes(rgb, r.depth, hole, cam, planes, fallback_depth=req.pivot_depth, observed=req.observed,
                              inpaint_radius=cfg.inpaint_radius)
            rgb, depth = fill.rgb, fill.depth
            observed_conf = np.ones((H, W), np.float32)
            if not hole.all():
                observed_conf[~hole] = np.minimum(1.0, work.conf[r.index[~hole]])
            conf = confidence_of(fill.kind, observed_conf)
            new = points_from_view(rgb, depth, cam, conf, req.step, j, mask=hole & (fill.kind != KIND_OBSERVED),
                                   edge_rel_thresh=None)
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
                               notes="cache render + reference transfer + background-side hole filling (planes, harmonic)")
