"""Synthetic scene builders: the seeded procedural scenes (room, objects, outdoor), the inconsistency
benchmark's distorted frames, and the splat test scene's Gaussian renders. Nothing here writes files
(`worldstereo.bench.writers` does).

>>> scene = make_scene("objects", seed=2)                     # a SyntheticScene
>>> data = make_inconsistent(SyntheticConfig(frames=10))      # distorted FrameResults + true geometry
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from worldstereo.bench.synthetic_scene import (PATH_NAMES, SCENE_KINDS, Box, Pattern, Primitive, Rect, Sphere,
                                               SyntheticScene, Texture)
from worldstereo.cameras import Camera, intrinsics_from_fov, look_at
from worldstereo.geometry import invert_rigid, unproject_depth, voxel_downsample
from worldstereo.io.results import FrameResults

# --------------------------------------------------------------------------- procedural scenes


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rotate(prims: list[Primitive], R: np.ndarray) -> list[Primitive]:
    """Rotate primitives about the origin (the input camera centre) by R [3, 3]."""
    for p in prims:
        p.center = R @ p.center
        if isinstance(p, Rect):
            p.axis_u, p.axis_v = R @ p.axis_u, R @ p.axis_v
        elif isinstance(p, Box):
            p.R = R @ p.R
    return prims


def _level_pivot(pitch: float, d: float) -> np.ndarray:
    """The pivot in the level frame: depth d along an optical axis pitched down by `pitch`."""
    return np.array([0.0, d * math.sin(pitch), d * math.cos(pitch)])


def _colour(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.95) -> tuple[float, float, float]:
    r, g, b = (float(x) for x in rng.uniform(lo, hi, 3))
    return r, g, b


ALL_PATTERNS: tuple[Pattern, ...] = ("checker", "stripes", "noise", "bricks")


def _texture(rng: np.random.Generator, scale: float, patterns: Sequence[Pattern] = ALL_PATTERNS) -> Texture:
    return Texture(str(rng.choice(patterns)), _colour(rng), _colour(rng), scale * float(rng.uniform(0.7, 1.4)),
                   int(rng.integers(0, 2**31 - 1)))


def _ground(y: float, half: float, cz: float, tex: Texture) -> Rect:
    """A horizontal rectangle at height y (world y down), centred at (0, y, cz)."""
    return Rect(np.array([0.0, y, cz]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), half, half, tex)


def _objects_around(rng: np.random.Generator, floor_y: float, pivot: np.ndarray, radius: float, count: int,
                    size: tuple[float, float]) -> list[Primitive]:
    """Boxes (turned about the vertical) and spheres standing on the floor within `radius` of the pivot."""
    prims: list[Primitive] = []
    for _ in range(count):
        a = rng.uniform(0, 2 * np.pi)
        r = radius * math.sqrt(rng.uniform(0.05, 1.0))
        x, z = pivot[0] + r * math.cos(a), pivot[2] + r * math.sin(a)
        s = rng.uniform(*size)
        tex = _texture(rng, 0.25 * s + 0.1)
        if rng.uniform() < 0.5:
            half = np.array([s * rng.uniform(0.4, 0.8), s * rng.uniform(0.3, 0.7), s * rng.uniform(0.4, 0.8)])
            prims.append(Box(np.array([x, floor_y - half[1], z]), _rot_y(rng.uniform(0, np.pi)), half, tex))
        else:
            rad = 0.5 * s
            prims.append(Sphere(np.array([x, floor_y - rad, z]), rad, tex))
    return prims


def _room(rng: np.random.Generator) -> tuple[list[Primitive], float, float]:
    eye_h = rng.uniform(1.3, 1.6)  # camera height above the floor; floor at y = +eye_h
    height = rng.uniform(3.6, 4.2)
    half_w = rng.uniform(4.0, 5.0)
    z0, z1 = -rng.uniform(1.5, 2.5), rng.uniform(6.0, 7.5)
    pivot_d = rng.uniform(2.5, 3.0)
    pitch = math.radians(rng.uniform(15, 22))
    room = Box(np.array([0.0, eye_h - height / 2, (z0 + z1) / 2]), np.eye(3),
               np.array([half_w, height / 2, (z1 - z0) / 2]), _texture(rng, 0.6, ("bricks", "noise", "stripes")),
               is_room=True)
    floor = _ground(eye_h - 1e-4, min(half_w, (z1 - z0) / 2) - 1e-3, (z0 + z1) / 2, _texture(rng, 0.5, ("checker",)))
    floor.half_v = (z1 - z0) / 2 - 1e-3
    floor.half_u = half_w - 1e-3
    pivot = _level_pivot(pitch, pivot_d)
    prims = [room, floor] + _objects_around(rng, eye_h, pivot, 1.3, int(rng.integers(3, 6)), (0.4, 0.9))
    # a picture on the back wall
    prims.append(Rect(np.array([rng.uniform(-1.5, 1.5), eye_h - 1.8, z1 - 1e-3]), np.array([1.0, 0, 0]),
                      np.array([0, 1.0, 0]), rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.7), _texture(rng, 0.15)))
    return prims, pivot_d, pitch


def _objects(rng: np.random.Generator) -> tuple[list[Primitive], float, float]:
    eye_h = rng.uniform(0.8, 1.2)
    pivot_d = rng.uniform(2.0, 2.5)
    pitch = math.radians(rng.uniform(20, 30))
    pivot = _level_pivot(pitch, pivot_d)
    prims = [
        _ground(eye_h, 6.0, pivot_d, _texture(rng, 0.4, ("checker", "noise"))),
        Rect(np.array([0.0, eye_h - 3.0, pivot_d + 3.5]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), 6.0, 3.0,
             _texture(rng, 0.7, ("noise", "stripes", "bricks"))),
    ]
    prims += _objects_around(rng, eye_h, pivot, 1.1, int(rng.integers(4, 8)), (0.3, 0.7))
    return prims, pivot_d, pitch


def _outdoor(rng: np.random.Generator) -> tuple[list[Primitive], float, float]:
    eye_h = rng.uniform(1.5, 1.8)
    pivot_d = rng.uniform(5.0, 7.0)
    pitch = math.radians(rng.uniform(4, 10))
    pivot = _level_pivot(pitch, pivot_d)
    prims: list[Primitive] = [_ground(eye_h, 35.0, pivot_d + 12.0, _texture(rng, 1.5, ("noise", "checker")))]
    for _ in range(int(rng.integers(5, 9))):  # buildings, beyond the reach of every path
        a = rng.uniform(-0.45 * np.pi, 0.45 * np.pi)
        r = rng.uniform(pivot_d + 9.0, pivot_d + 25.0)
        half = np.array([rng.uniform(2, 5), rng.uniform(3, 9), rng.uniform(2, 5)])
        prims.append(Box(np.array([r * math.sin(a), eye_h - half[1], r * math.cos(a)]), _rot_y(rng.uniform(0, np.pi)),
                         half, _texture(rng, 1.2, ("bricks", "stripes", "checker"))))
    for _ in range(int(rng.integers(3, 6))):  # trees: a trunk and a crown, near the pivot
        a = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(1.0, 3.5)
        x, z = r * math.cos(a), pivot_d + r * math.sin(a)
        trunk_h = rng.uniform(1.0, 2.0)
        prims.append(Box(np.array([x, eye_h - trunk_h / 2, z]), _rot_y(rng.uniform(0, np.pi)),
                         np.array([0.12, trunk_h / 2, 0.12]), _texture(rng, 0.3, ("stripes", "noise"))))
        crown = rng.uniform(0.6, 1.1)
        prims.append(Sphere(np.array([x, eye_h - trunk_h - 0.7 * crown, z]), crown, _texture(rng, 0.4, ("noise",))))
    prims += _objects_around(rng, eye_h, pivot, 1.0, int(rng.integers(1, 3)), (0.5, 1.0))  # rocks / crates
    return prims, pivot_d, pitch


_BUILDERS = {"room": _room, "objects": _objects, "outdoor": _outdoor}


def make_scene(kind: str, seed: int) -> SyntheticScene:
    """Build a seeded procedural scene of `kind` (room, objects, outdoor); same inputs, same scene."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown synthetic scene kind {kind!r}; choose from {', '.join(SCENE_KINDS)}")
    rng = np.random.default_rng([seed, SCENE_KINDS.index(kind)])
    prims, pivot_d, pitch = _BUILDERS[kind](rng)  # built level, camera pitched down by `pitch`
    _rotate(prims, _rot_x(pitch))  # world = input camera frame: the pitched optical axis becomes +z
    scene = SyntheticScene(kind=kind, seed=seed, primitives=prims, pivot_depth=float(pivot_d),
                           fov_deg=float(rng.uniform(55.0, 70.0)))
    _clear_paths(scene)
    return scene


def _distance_to(prim: Box | Sphere, p: np.ndarray) -> np.ndarray:
    """Distance [N] from points p [N, 3] to a closed box or sphere (0 inside)."""
    if isinstance(prim, Sphere):
        return np.maximum(np.linalg.norm(p - prim.center, axis=1) - prim.radius, 0.0)
    q = np.abs((p - prim.center) @ prim.R) - prim.half
    return np.linalg.norm(np.maximum(q, 0.0), axis=1)


def _clear_paths(scene: SyntheticScene, clearance: float = 0.35) -> None:
    """Remove objects that any standard path (or the input camera) would pass through or graze."""
    centres = np.array([c.center for name in PATH_NAMES for c in scene.path(name, 17, 64, 48)])
    keep = []
    for prim in scene.primitives:
        solid = isinstance(prim, Sphere) or (isinstance(prim, Box) and not prim.is_room)
        if solid and _distance_to(prim, centres).min() < clearance:
            continue
        keep.append(prim)
    scene.primitives = keep


# --------------------------------------------------------------------------- frames → results.npz arrays


def frames_to_results(renders: Sequence[tuple[np.ndarray, np.ndarray]], cams: Sequence[Camera], noise: float,
                      rng: np.random.Generator) -> FrameResults:
    """Rendered (rgb, depth) pairs along `cams` in the results.npz schema (depth 0 = nothing hit).

    noise > 0 distorts every frame but the first (the input view stays exact): a random global scale
    and a smooth multiplicative warp per frame, both of relative size `noise`."""
    imgs, depths, w2c = [], [], []
    for k, (cam, (rgb, depth)) in enumerate(zip(cams, renders)):
        if noise > 0 and k > 0:  # frame 0 stays exact: it is the input view
            H, W = depth.shape
            v, u = np.mgrid[0:H, 0:W] / max(H, W)
            a = rng.normal(0, noise, 3)
            warp = (1 + rng.normal(0, noise)) * (1 + a[0] * (u - 0.5) + a[1] * (v - 0.5) + a[2] * np.sin(3 * u + 2 * v))
            depth = depth * warp.astype(np.float32)
        imgs.append(rgb)
        depths.append(np.where(np.isfinite(depth), depth, 0).astype(np.float32))  # results.npz: 0 = unknown
        w2c.append(cam.w2c[:3])
    depth = np.stack(depths)
    return FrameResults(depth, (depth > 0).astype(np.float32), np.stack(w2c).astype(np.float32),
                        np.stack([c.K for c in cams]).astype(np.float32), np.stack(imgs))


# --------------------------------------------------------------------------- the inconsistency benchmark
# Known scene and poses, per-frame depth distorted the way generated videos are (scale drift, smooth
# low-frequency warps, optionally rigid pose noise). Frame 0 is left undistorted: it plays the input
# view whose depth defines the world (the gauge). Frame i > 0 gets
#     depth_i'(u, v) = s_i · (1 + a Σ_k sin(2π(f_k·(u/W, v/H)) + φ_k)) · depth_i(u, v)
# with s_i a smooth drift within ±`scale_drift` and a ≈ `warp_amp`, and a pose c2w_i · ΔT_i when
# `rigid_rot_deg` / `rigid_trans` > 0.


@dataclass
class SyntheticConfig:
    """One synthetic inconsistency case (see the comment above)."""

    kind: str = "room"
    """Synthetic scene kind (room, objects, outdoor)."""
    seed: int = 0
    """Scene and distortion seed."""
    path: str = "orbit"
    """Camera path name (SyntheticScene.path)."""
    frames: int = 20
    """Frames rendered."""
    width: int = 160
    """Render width."""
    height: int = 120
    """Render height."""
    scale_drift: float = 0.10
    """Largest per-frame depth scale error (fraction)."""
    warp_amp: float = 0.03
    """Amplitude of the smooth multiplicative depth warp."""
    rigid_rot_deg: float = 0.0
    """Random pose rotation error per frame (degrees)."""
    rigid_trans: float = 0.0
    """Random pose translation error per frame (fraction of the median depth)."""
    rigid_rot_deg_min: float | None = None
    """When set, each frame's rotation error is uniform in [this, rigid_rot_deg] (else exactly rigid_rot_deg)."""
    rigid_trans_min: float | None = None
    """When set, each frame's translation error is uniform in [this, rigid_trans]."""
    depth_shift: float = 0.0
    """Per-frame additive depth offset, uniform within ± this fraction of the median depth (a
    monocular model's scale-and-shift ambiguity), on top of an independent per-frame scale."""
    frame_scale: float = 0.0
    """Independent per-frame depth scale error, uniform within ± this (on top of the smooth drift)."""
    bumps: int = 0
    """Local Gaussian bumps per frame (hallucinated bulges / dents of the depth map)."""
    bump_amp: float = 0.05
    """Largest bump height (fraction of the local depth); radius 4–10 % of the image width."""
    bad_frames: int = 0
    """Frames (never frame 0 or 1) whose depth is replaced by random smooth noise: must be rejected."""
    clutter: int = 0
    """Boxes added 0.4–1.0 m in front of the path's cameras (close-range occluders, wide depth range)."""


@dataclass
class SyntheticData:
    """An inconsistency case: what a reconstruction gets, and the truth it is scored against."""

    results: FrameResults  # distorted depth + given (possibly perturbed) poses
    true_c2w: np.ndarray  # [F, 4, 4]
    true_depth: np.ndarray  # [F, H, W]
    gt_xyz: np.ndarray  # [M, 3] union of true frame points (voxel-downsampled; bad frames included)
    scale: float  # median depth of frame 0
    bad_frames: tuple[int, ...] = ()  # frames whose depth is random (must be rejected)


def depth_warp(height: int, width: int, amp: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field [H, W] around 1 (≤ 1 cycle per image, 3 waves)."""
    v, u = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    field = np.zeros((height, width))
    for _ in range(3):
        fx, fy = rng.uniform(-1.0, 1.0, 2)
        field += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * (fx * u + fy * v) + rng.uniform(0, 2 * np.pi))
    return 1.0 + amp * field / 2.0


def render_frames(cfg: SyntheticConfig) -> tuple[list[Camera], np.ndarray, np.ndarray]:
    """(cameras, rgb [F, H, W, 3] uint8, depth [F, H, W] with 0 where nothing was hit)."""
    scene = make_scene(cfg.kind, cfg.seed)
    cams = scene.path(cfg.path, cfg.frames, cfg.width, cfg.height)
    if cfg.clutter > 0:
        add_clutter(scene, cams, cfg.clutter, np.random.default_rng([cfg.seed, 3000]))
    rgbs, depths = [], []
    for cam in cams:
        rgb, depth = scene.render(cam)
        depths.append(np.where(np.isfinite(depth) & (depth > 0), depth, 0.0))
        rgbs.append(rgb)
    return cams, np.stack(rgbs), np.stack(depths)


def make_inconsistent(cfg: SyntheticConfig) -> SyntheticData:
    """Render the case's path and distort it: depth scale drift and warps, optional rigid pose error."""
    cams, rgb, depth = render_frames(cfg)
    rng = np.random.default_rng(cfg.seed + 1000)
    F, H, W = depth.shape
    scale = float(np.median(depth[0][depth[0] > 0]))
    t = np.linspace(0.0, 1.0, F)
    phase = rng.uniform(0, 2 * np.pi)
    drift = np.sin(2 * np.pi * 0.75 * t + phase) - np.sin(phase)  # 0 at frame 0, smooth
    drift = cfg.scale_drift * drift / max(np.abs(drift).max(), 1e-9)
    dist = np.empty_like(depth)
    w2c = np.empty((F, 3, 4))
    true_c2w = np.stack([c.c2w for c in cams])
    extra = np.random.default_rng([cfg.seed, 2000])  # the harder distortions: own stream, old cases unchanged
    bad = _bad_frame_indices(F, cfg.bad_frames, extra)
    for i in range(F):
        d = depth[i] * (1.0 + drift[i])
        if i > 0 and cfg.warp_amp > 0:
            d = d * depth_warp(H, W, cfg.warp_amp, rng)
        if i > 0:
            d = _harder_depth(d, cfg, scale, extra)
        if i in bad:
            d = scale * (0.3 + 1.7 * _smooth_noise(H, W, extra))
        dist[i] = np.where(depth[i] > 0, d, 0.0)
        c2w = true_c2w[i].copy()
        if i > 0 and (cfg.rigid_rot_deg > 0 or cfg.rigid_trans > 0):
            dT = np.eye(4)
            rot = cfg.rigid_rot_deg if cfg.rigid_rot_deg_min is None else extra.uniform(cfg.rigid_rot_deg_min, cfg.rigid_rot_deg)
            tr = cfg.rigid_trans if cfg.rigid_trans_min is None else extra.uniform(cfg.rigid_trans_min, cfg.rigid_trans)
            dT[:3, :3] = Rotation.from_rotvec(np.radians(rot) * _unit(rng)).as_matrix()
            dT[:3, 3] = tr * scale * _unit(rng)
            c2w = c2w @ dT
        w2c[i] = np.linalg.inv(c2w)[:3]
    K = np.stack([c.K for c in cams])
    res = FrameResults(dist.astype(np.float32), (depth > 0).astype(np.float32), w2c.astype(np.float32),
                       K.astype(np.float32), rgb.astype(np.uint8))
    gt = np.concatenate([unproject_depth(np.where(depth[i] > 0, depth[i], np.nan), K[i], true_c2w[i]).reshape(-1, 3)
                         for i in range(F)])
    gt = gt[np.all(np.isfinite(gt), axis=1)]
    gt, _ = voxel_downsample(gt, 0.002 * scale)
    return SyntheticData(res, true_c2w, depth, gt, scale, tuple(sorted(bad)))


def _bad_frame_indices(F: int, count: int, rng: np.random.Generator) -> set[int]:
    """`count` distinct frames in 2..F−1 (frames 0 and 1 start the model; they stay good)."""
    if count <= 0 or F < 3:
        return set()
    return {int(k) for k in rng.choice(np.arange(2, F), min(count, F - 2), replace=False)}


def _harder_depth(d: np.ndarray, cfg: SyntheticConfig, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Per-frame scale and shift, then local bumps (the harder benchmark; no-op at the defaults)."""
    H, W = d.shape
    if cfg.frame_scale > 0 or cfg.depth_shift > 0:
        d = d * (1.0 + rng.uniform(-cfg.frame_scale, cfg.frame_scale)) + scale * rng.uniform(-cfg.depth_shift, cfg.depth_shift)
    if cfg.bumps > 0:
        v, u = np.mgrid[0:H, 0:W].astype(np.float64)
        field = np.ones((H, W))
        for _ in range(cfg.bumps):
            cu, cv = rng.uniform(0, W), rng.uniform(0, H)
            r = W * rng.uniform(0.04, 0.10)
            field += rng.uniform(-cfg.bump_amp, cfg.bump_amp) * np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * r * r))
        d = d * field
    return np.maximum(d, 1e-3 * scale)


def _smooth_noise(H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    """Random smooth field [H, W] in [0, 1] (a bad frame's depth: plausible-looking, unrelated to the scene)."""
    coarse = rng.uniform(0, 1, (5, 5))
    v, u = np.mgrid[0:H, 0:W] / np.array([max(H - 1, 1), max(W - 1, 1)])[:, None, None] * 4
    i, j = np.minimum(v.astype(int), 3), np.minimum(u.astype(int), 3)
    fv, fu = v - i, u - j
    return ((1 - fv) * (1 - fu) * coarse[i, j] + (1 - fv) * fu * coarse[i, j + 1]
            + fv * (1 - fu) * coarse[i + 1, j] + fv * fu * coarse[i + 1, j + 1])


def add_clutter(scene: SyntheticScene, cams: Sequence[Camera], count: int, rng: np.random.Generator,
                min_clearance: float = 0.3) -> None:
    """Add `count` small boxes 0.4–1.0 m in front of random path cameras (inside their view, at
    least `min_clearance` from every camera centre): close occluders in front of a far background."""
    centres = np.array([c.center for c in cams])
    added, tries = 0, 0
    while added < count and tries < 50 * count:
        tries += 1
        cam = cams[int(rng.integers(len(cams)))]
        ray = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.25, 0.25), 1.0])
        centre = cam.c2w[:3, :3] @ (rng.uniform(0.4, 1.0) * ray / np.linalg.norm(ray)) + cam.center
        half = rng.uniform(0.06, 0.15, 3)
        box = Box(centre, _rot_y(rng.uniform(0, np.pi)), half, _texture(rng, 0.08))
        if _distance_to(box, centres).min() < min_clearance:
            continue
        scene.primitives.append(box)
        added += 1


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


# --------------------------------------------------------------------------- the splat test scene
# Textured walls, floor and a ball, seen from cameras on an arc, rendered by our own rasterizer from
# dense ground-truth Gaussians (worldstereo.bench.writers.make_synthetic_scene writes it as a scene).


def splat_scene_colours(p: np.ndarray) -> np.ndarray:
    """Colour [N, 3] in [0, 1] for points [N, 3]: checkerboard × smooth hue."""
    chk = ((np.floor(p[:, 0] * 4) + np.floor(p[:, 1] * 4) + np.floor(p[:, 2] * 4)) % 2)[:, None]
    hue = 0.5 + 0.4 * np.stack([np.sin(2 * p[:, 0] + 0.3), np.sin(2 * p[:, 1] + 2.1), np.sin(2 * p[:, 2] + 4.2)], 1)
    return np.clip(0.25 + 0.5 * hue * (0.6 + 0.4 * chk), 0, 1)


def splat_scene_points(spacing: float = 0.04) -> np.ndarray:
    """Surface samples [N, 3]: a back wall (z = 3), a floor (y = 0.8) and a ball at (0, 0.3, 2.3)."""
    g = np.arange(-1.6, 1.6 + 1e-9, spacing)
    wall = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    wall = np.c_[wall, np.full(len(wall), 3.0)]
    zs = np.arange(1.0, 3.0, spacing)
    fl = np.stack(np.meshgrid(g, zs, indexing="ij"), -1).reshape(-1, 2)
    floor = np.c_[fl[:, 0], np.full(len(fl), 0.8), fl[:, 1]]
    n_ball = int(4 * math.pi * 0.45 ** 2 / spacing ** 2)
    k = np.arange(n_ball) + 0.5  # Fibonacci sphere
    phi, th = np.arccos(1 - 2 * k / n_ball), math.pi * (1 + 5 ** 0.5) * k
    ball = 0.45 * np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1) + [0, 0.3, 2.3]
    return np.concatenate([wall, floor, ball]).astype(np.float32)


def splat_scene_cameras(n_views: int, width: int, height: int, arc_deg: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """w2c [n, 4, 4] on an arc around the ball, and K [3, 3] (60° field of view)."""
    target = np.array([0.0, 0.2, 2.4])
    w2c = []
    for a in np.radians(np.linspace(-arc_deg / 2, arc_deg / 2, n_views)):
        eye = target + 2.2 * np.array([math.sin(a), -0.25, -math.cos(a)])
        w2c.append(invert_rigid(look_at(eye, target)))
    return np.stack(w2c), intrinsics_from_fov(width, height, 60.0)


def render_splat_views(pts: np.ndarray, rgb: np.ndarray, w2c: np.ndarray, K: np.ndarray, width: int, height: int,
                       spacing: float) -> FrameResults:
    """Render isotropic Gaussians (σ = 0.7 × spacing, opacity 0.95) at pts [N, 3] with colours rgb
    [N, 3] in 0..1 from each w2c [V, 4, 4] with the torch rasterizer (grey background)."""
    import torch

    from worldstereo.render.gaussians import rasterize

    n = len(pts)
    means = torch.from_numpy(pts)
    scales = torch.full((n, 3), spacing * 0.7)
    quats = torch.tensor([1.0, 0, 0, 0]).repeat(n, 1)
    opac = torch.full((n,), 0.95)
    cols = torch.from_numpy(rgb).float()
    Kt = torch.from_numpy(K).float()
    images, depths = [], []
    with torch.no_grad():
        for v in w2c:
            o = rasterize(means, quats, scales, opac, cols, torch.from_numpy(v).float(), Kt, width, height,
                          background=torch.full((3,), 0.5), backend="torch")
            images.append((o.colour.clamp(0, 1) * 255).round().byte().numpy())
            depths.append((o.depth / o.alpha.clamp_min(1e-6))[..., 0].numpy())
    n_views = len(w2c)
    return FrameResults(np.stack(depths).astype(np.float32), np.ones((n_views, height, width), np.float32),
                        w2c[:, :3].astype(np.float32), np.repeat(K[None], n_views, 0).astype(np.float32),
                        np.stack(images))


def noisy_cache(pts: np.ndarray, rgb: np.ndarray, spacing: float, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """A sparser, noisy copy of the surface for initialisation: a random half of pts, moved by
    N(0, spacing/4), colours rgb (0..1) as uint8 with N(0, 8) noise. Returns xyz [M, 3] f32, rgb [M, 3] u8."""
    keep = rng.random(len(pts)) < 0.5
    noisy = pts[keep] + rng.normal(0, spacing * 0.25, (int(keep.sum()), 3)).astype(np.float32)
    c8 = np.clip(rgb[keep] * 255 + rng.normal(0, 8, (int(keep.sum()), 3)), 0, 255).astype(np.uint8)
    return noisy, c8
