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
     see (and agree with) what earlier frames invented;
  5. what the frame emits as geometry (conf > 0, what update_cache stores) is narrower: plane hits
     and re-rendered trusted points only; harmonic / extrapolated guesses, their re-renders and
     pixels on depth steps get conf 0 (they were almost never within τ on the synthetic benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.console import progress
from worldstereo.generate.base import GeneratedFrames, GenerationRequest
from worldstereo.generate.holefill import (KIND_EXTRAPOLATED, KIND_INTERPOLATED, KIND_OBSERVED, confidence_of,
                                           dense_planes, fill_holes, fit_planes, flying_pixels,
                                           plane_texture, plane_tolerance)
from worldstereo.generate.transfer import transfer_colour
from worldstereo.memory.cache import PointCache, points_from_view, violates_free_space


@dataclass
class GeometricConfig:
    """The default CPU backend."""

    transfer_depth_tol: float = 0.03
    """Relative depth agreement for a reference pixel to count as seeing the same point."""
    inpaint_radius: int = 3
    """Telea radius for holes without a background rim (their colour comes from the far side only)."""
    max_planes: int = 4
    """Dominant planes fitted (RANSAC) to the input view's points and extended into holes."""
    plane_extent_margin: float = 0.25
    """How far a wall-like plane extends past the box of its inliers, as a fraction of that box per
    side. On room_000 wall hits past 0.25 were right for 29 % (0.25–0.5) and 10 % (> 0.5) of pixels,
    inside the box for 91 % (BENCHMARKS.md, issue 12)."""
    level_extent_margin: float = 1.0
    """The same for level planes (floor, ground, ceiling: normal within ~25° of the input camera's
    up): a floor runs on behind objects and past the border far more often than a wall does."""
    plane_min_cover: float = 0.6
    """A plane is extended only if its inliers cover this fraction of their box in the input image
    (8-px cells): floors and walls do, planes through scattered objects do not (holefill.dense_planes)."""
    flying_edge_rel: float = 0.04
    """Frame pixels at a depth step (inverse depth's second difference above this fraction, both
    sides) get conf 0: splat borders and hole rims there mix foreground and background depth."""
    plane_texture: bool = True
    """Colour plane-hit hole pixels with the plane's own texture as the input saw it, mirrored past
    its observed extent (holefill.plane_colours); off: the smooth colour from the background rim."""
    emit_guesses: bool = False
    """Give interpolated / extrapolated hole depth a confidence > 0, so update_cache adds it to the
    cache. Off: those pixels keep their colour and depth in the frame (the frame looks the same) but
    carry conf 0, because on the synthetic benchmark almost none of them lies within τ of the surface."""
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
        planes = self._planes(work.select(work.step == 0), req)
        trusted = np.ones(len(work), bool)  # working-cache points whose re-render may carry confidence
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
            conf = confidence_of(fill.kind, _observed_conf(work, trusted, r.index, hole))
            work, trusted = self._remember(work, trusted, rgb, depth, conf, hole, fill.kind, cam, req, j)
            if not cfg.emit_guesses:
                conf[np.isin(fill.kind, (KIND_INTERPOLATED, KIND_EXTRAPOLATED))] = 0.0
            conf[flying_pixels(depth, cfg.flying_edge_rel)] = 0.0
            rgb_out[j], depth_out[j], conf_out[j] = rgb, depth, conf
        return GeneratedFrames(rgb_out, depth_out, conf_out, self.name,
                               notes="cache render + reference transfer + background-side hole filling (planes, harmonic)")

    def _planes(self, input_points: PointCache, req: GenerationRequest) -> list:
        """Dominant planes of the input view's points; with the input camera known, only dense ones;
        each with the texture the input saw on it (carried into the holes it fills)."""
        cfg = self.cfg
        xyz_input = input_points.xyz
        observer = req.observed[0] if req.observed is not None else None
        perspective = isinstance(observer, Camera)
        # OpenCV axes, y points down: the input camera's -y, or a panorama's world -y (docs/panorama.md)
        up = -observer.c2w[:3, 1] if perspective else np.array([0.0, -1.0, 0.0]) if observer is not None else None
        planes = fit_planes(xyz_input, max_planes=cfg.max_planes, extent_margin=cfg.plane_extent_margin, up=up,
                            level_margin=cfg.level_extent_margin)
        if perspective:  # the image-box cover test needs one perspective view; a panorama's planes are all kept
            planes = dense_planes(planes, xyz_input, observer, min_cover=cfg.plane_min_cover)
        if cfg.plane_texture and len(xyz_input):
            tol = plane_tolerance(xyz_input)  # fit_planes' inlier band
            for p in planes:
                p.texture = plane_texture(p, xyz_input, input_points.rgb, tol)
        return planes

    def _remember(self, work: PointCache, trusted: np.ndarray, rgb: np.ndarray, depth: np.ndarray, conf: np.ndarray,
                  hole: np.ndarray, kind: np.ndarray, cam, req: GenerationRequest, j: int) -> tuple[PointCache, np.ndarray]:
        """Add frame j's synthesised pixels to the working cache, so later frames agree with them.

        A guess in space the input view saw empty is wrong: its pixel keeps colour and depth but gets
        conf 0 (in place) and stays out. Interpolated / extrapolated guesses enter untrusted unless
        emit_guesses: later frames show them, but their re-render carries conf 0, not a vote."""
        new = points_from_view(rgb, depth, cam, conf, req.step, j, mask=hole & (kind != KIND_OBSERVED),
                               edge_rel_thresh=None)
        yy, xx = np.nonzero(hole & (kind != KIND_OBSERVED) & np.isfinite(depth) & (depth > 0))
        if req.observed is not None and len(new):
            bad = violates_free_space(new.xyz, *req.observed)
            conf[yy[bad], xx[bad]] = 0.0
            new, yy, xx = new.select(~bad), yy[~bad], xx[~bad]
        new_trusted = self.cfg.emit_guesses | ~np.isin(kind[yy, xx], (KIND_INTERPOLATED, KIND_EXTRAPOLATED))
        return work.concat(new), np.concatenate([trusted, new_trusted])


def _observed_conf(work: PointCache, trusted: np.ndarray, index: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """[H, W] confidence of the rendered (non-hole) pixels: the cache point's, capped at 1; 0 where
    the point is an untrusted guess of this trajectory (re-rendering a guess is no evidence for it)."""
    out = np.ones(hole.shape, np.float32)
    if not hole.all():
        idx = index[~hole]
        out[~hole] = np.where(trusted[idx], np.minimum(1.0, work.conf[idx]), 0.0)
    return out
