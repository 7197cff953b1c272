"""Synthetic scene definition with exact ground truth: analytic primitives, solid textures, numpy ray casting.

A scene is a list of primitives (rectangles, oriented boxes, spheres), each with a procedural
*solid* texture (colour is a function of the 3D surface point, so every view sees the same colour
at the same point) and view-independent Lambert shading. Rendering casts one ray per pixel
centre and keeps the nearest hit, so depth, K and poses are exact: a pixel unprojected with its
depth and projected into another view lands on the same surface point.

World frame = the default ("input") camera's frame: OpenCV axes (x right, y down, z forward),
the input camera at the origin looking down +z, "up" is −y.

Scenes are built by `worldstereo.bench.builders.make_scene` and written to disk by
`worldstereo.bench.writers`.

>>> from worldstereo.bench.builders import make_scene
>>> scene = make_scene("room", seed=3)
>>> cam = scene.default_camera(256, 192)
>>> rgb, depth = scene.render(cam)            # [192, 256, 3] uint8, [192, 256] float32 (inf = sky)
>>> xyz, col = scene.sample_points(100_000, seed=0, cameras=[cam])   # visible GT surface samples
>>> path = scene.path("orbit", 21, 256, 192)   # list[Camera]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from worldstereo.cameras import Camera, PlannerConfig, intrinsics_from_fov, look_at, plan_trajectory
from worldstereo.geometry import pixel_grid

SceneKind = Literal["room", "objects", "outdoor"]
SCENE_KINDS: tuple[str, ...] = ("room", "objects", "outdoor")
PathName = Literal["orbit", "up", "left", "right", "forward", "sweep"]
PATH_NAMES: tuple[str, ...] = ("orbit", "up", "left", "right", "forward", "sweep")
Pattern = Literal["checker", "stripes", "noise", "bricks"]

_EPS = 1e-9
_LIGHT = np.array([0.35, -0.8, -0.45]) / np.linalg.norm([0.35, -0.8, -0.45])  # towards the light


# --------------------------------------------------------------------------- textures


def _hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice point (uint32 mixing)."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint32) * np.uint32(73856093)) ^ (iy.astype(np.uint32) * np.uint32(19349663))
        h ^= iz.astype(np.uint32) * np.uint32(83492791)
        h ^= np.uint32((seed * 2654435761) & 0xFFFFFFFF)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x7FEB352D)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x846CA68B)
        h ^= h >> np.uint32(16)
    return h.astype(np.float64) / 4294967296.0


def value_noise(p: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth 3D value noise in [0, 1] at points p [N, 3]; features about `scale` metres wide."""
    q = p / scale
    i = np.floor(q).astype(np.int64)
    f = q - i
    w = f * f * (3 - 2 * f)  # smoothstep weights [N, 3]
    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                wx = w[:, 0] if dx else 1 - w[:, 0]
                wy = w[:, 1] if dy else 1 - w[:, 1]
                wz = w[:, 2] if dz else 1 - w[:, 2]
                out += wx * wy * wz * _hash01(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def fbm(p: np.ndarray, scale: float, seed: int, octaves: int = 3) -> np.ndarray:
    """Fractal sum of value noise, normalised to [0, 1]."""
    total, amp, norm = np.zeros(len(p)), 1.0, 0.0
    for o in range(octaves):
        total += amp * value_noise(p, scale / 2**o, seed + 101 * o)
        norm += amp
        amp *= 0.5
    return total / norm


@dataclass
class Texture:
    """Solid texture: colour(p) = lerp(colour_a, colour_b, pattern(p)) × fine-grain noise.

    Patterns: checker (3D cells of `scale` m), stripes (along x+z), noise (fbm of `scale`),
    bricks (rows of `scale`·0.5 m, staggered). The fine grain keeps every surface matchable.
    """

    pattern: Pattern
    colour_a: tuple[float, float, float]  # RGB in 0..1
    colour_b: tuple[float, float, float]
    scale: float
    seed: int

    def colour(self, p: np.ndarray) -> np.ndarray:
        """Albedo [N, 3] in 0..1 at surface points p [N, 3]."""
        q = p + 0.3137 * self.scale  # keep lattice boundaries off axis-aligned planes at round coordinates
        if self.pattern == "checker":
            c = np.floor(q / self.scale).astype(np.int64).sum(axis=1)
            m = (c % 2).astype(np.float64)
        elif self.pattern == "stripes":
            m = 0.5 + 0.5 * np.sin(2 * np.pi * (q[:, 0] + q[:, 2]) / self.scale)
        elif self.pattern == "bricks":
            row = np.floor(q[:, 1] / (0.5 * self.scale))
            col = np.floor((q[:, 0] + q[:, 2]) / self.scale + 0.5 * (row % 2))
            m = _hash01(row.astype(np.int64), col.astype(np.int64), np.zeros_like(row, np.int64), self.seed)
        else:
            m = fbm(p, self.scale, self.seed)
        grain = fbm(p, 0.05, self.seed + 7, octaves=2)
        a, b = np.asarray(self.colour_a), np.asarray(self.colour_b)
        col = a + (b - a) * m[:, None]
        return np.clip(col * (0.7 + 0.6 * grain[:, None]), 0.0, 1.0)


# --------------------------------------------------------------------------- primitives


@dataclass
class Rect:
    """A rectangle: centre, orthonormal in-plane axes (axis_u, axis_v), half sizes; two-sided."""

    center: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    half_u: float
    half_v: float
    texture: Texture

    @property
    def area(self) -> float:
        return 4 * self.half_u * self.half_v

    def intersect(self, ro: np.ndarray, rd: np.ndarray) -> np.ndarray:
        """Ray parameter t [N] of the hit (inf where missed); rays ro + t·rd, ro/rd [N, 3]."""
        n = np.cross(self.axis_u, self.axis_v)
        denom = rd @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((self.center - ro) @ n) / denom
        p = ro + t[:, None] * rd
        lu = (p - self.center) @ self.axis_u
        lv = (p - self.center) @ self.axis_v
        ok = (np.abs(denom) > _EPS) & (t > _EPS) & (np.abs(lu) <= self.half_u) & (np.abs(lv) <= self.half_v)
        return np.where(ok, t, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.cross(self.axis_u, self.axis_v), p.shape)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        a = rng.uniform(-1, 1, size=(n, 2))
        return self.center + a[:, :1] * self.half_u * self.axis_u + a[:, 1:] * self.half_v * self.axis_v


@dataclass
class Box:
    """An oriented box: centre, rotation R [3, 3] (columns = local axes in world), half sizes [3].

    Hit from outside at the entry face; a ray starting inside hits the exit face (rooms)."""

    center: np.ndarray
    R: np.ndarray
    half: np.ndarray
    texture: Texture
    is_room: bool = False
    """The room's hull: seen from inside, so it is not a solid that buries samples or blocks paths."""

    @property
    def area(self) -> float:
        hx, hy, hz = self.half
        return 8 * (hx * hy + hy * hz + hx * hz)

    def intersect(self, ro: np.ndarray, rd: np.ndarray) -> np.ndarray:
        o = (ro - self.center) @ self.R
        d = rd @ self.R
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-self.half - o) / d
            t2 = (self.half - o) / d
        tmin = np.nanmax(np.minimum(t1, t2), axis=1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=1)
        t = np.where(tmin > _EPS, tmin, tmax)
        ok = (tmax >= tmin) & (t > _EPS)
        return np.where(ok, t, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        loc = (p - self.center) @ self.R
        ax = np.argmax(np.abs(loc) / self.half, axis=1)
        n = np.zeros_like(loc)
        n[np.arange(len(p)), ax] = np.sign(loc[np.arange(len(p)), ax])
        return n @ self.R.T

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        hx, hy, hz = self.half
        face_area = np.array([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy, hx * hy])
        face = rng.choice(6, size=n, p=face_area / face_area.sum())
        loc = rng.uniform(-1, 1, size=(n, 3)) * self.half
        ax = face // 2
        loc[np.arange(n), ax] = np.where(face % 2 == 0, -1.0, 1.0) * self.half[ax]
        return self.center + loc @ self.R.T


@dataclass
class Sphere:
    """A sphere: centre and radius."""

    center: np.ndarray
    radius: float
    texture: Texture

    @property
    def area(self) -> float:
        return 4 * math.pi * self.radius**2

    def intersect(self, ro: np.ndarray, rd: np.ndarray) -> np.ndarray:
        oc = ro - self.center
        a = np.einsum("ij,ij->i", rd, rd)
        b = np.einsum("ij,ij->i", oc, rd)
        c = np.einsum("ij,ij->i", oc, oc) - self.radius**2
        disc = b * b - a * c
        s = np.sqrt(np.maximum(disc, 0.0))
        t0 = (-b - s) / a
        t1 = (-b + s) / a
        t = np.where(t0 > _EPS, t0, t1)
        return np.where((disc >= 0) & (t > _EPS), t, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        return (p - self.center) / self.radius

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        v = rng.normal(size=(n, 3))
        return self.center + self.radius * v / np.linalg.norm(v, axis=1, keepdims=True)


Primitive = Rect | Box | Sphere


# --------------------------------------------------------------------------- the scene


@dataclass
class SyntheticScene:
    """Analytic primitives with exact ground truth. `pivot_depth`: distance of the point the camera
    paths turn around, on the input optical axis (chosen so no path passes through geometry)."""

    kind: str
    seed: int
    primitives: list[Primitive] = field(default_factory=list)
    pivot_depth: float = 3.0
    fov_deg: float = 60.0

    # ---- ray casting
    def raycast(self, ro: np.ndarray, rd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit of rays ro + t·rd (ro, rd [N, 3]; rd need not be unit).

        Returns t [N] (inf where nothing is hit) and the primitive index [N] (−1 where missed)."""
        ro = np.broadcast_to(np.asarray(ro, np.float64), rd.shape)
        best_t = np.full(len(rd), np.inf)
        best_i = np.full(len(rd), -1, np.int64)
        for i, prim in enumerate(self.primitives):
            t = prim.intersect(ro, rd)
            closer = t < best_t
            best_t[closer] = t[closer]
            best_i[closer] = i
        return best_t, best_i

    def shade(self, pts: np.ndarray, prim_idx: np.ndarray) -> np.ndarray:
        """View-independent colour [N, 3] uint8 of surface points on the given primitives."""
        out = np.zeros((len(pts), 3))
        for i in np.unique(prim_idx):
            if i < 0:
                continue
            sel = prim_idx == i
            prim = self.primitives[i]
            p = pts[sel]
            albedo = prim.texture.colour(p)
            lambert = np.abs(prim.normal(p) @ _LIGHT)
            out[sel] = albedo * (0.55 + 0.45 * lambert)[:, None]
        return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)

    def camera_rays(self, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """Origin [3] and per-pixel directions [H·W, 3] scaled so that t = camera z-depth."""
        u, v = pixel_grid(camera.height, camera.width)
        K = camera.K
        d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
        return camera.c2w[:3, 3].copy(), d_cam @ camera.c2w[:3, :3].T

    def render(self, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """Exact render at pixel centres: RGB [H, W, 3] uint8 (black where nothing is hit) and
        z-depth [H, W] float32 in metres (inf where nothing is hit)."""
        o, rd = self.camera_rays(camera)
        t, idx = self.raycast(o, rd)
        hit = np.isfinite(t)
        rgb = np.zeros((len(t), 3), np.uint8)
        rgb[hit] = self.shade(o + t[hit, None] * rd[hit], idx[hit])
        H, W = camera.height, camera.width
        return rgb.reshape(H, W, 3), t.astype(np.float32).reshape(H, W)

    # ---- ground truth
    def visible_from(self, pts: np.ndarray, cameras: Sequence[Camera], exact: bool = True, rel_tol: float = 1e-6,
                     depth_maps: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """[N] bool: points (on the surface) seen, unoccluded and inside the image, by any camera.

        exact: cast a ray to every candidate point (slow for many cameras); else compare with each
        camera's rendered depth at the 4 pixels around the projection (2 % relative tolerance).
        depth_maps: the cameras' `render_depth` when the caller has them (else rendered here)."""
        seen = np.zeros(len(pts), bool)
        for k, cam in enumerate(cameras):
            rest = np.flatnonzero(~seen)
            if len(rest) == 0:
                break
            idx, u, v, z = _project_inside(cam, pts, rest)
            if len(idx) == 0:
                continue
            if exact:
                t, _ = self.raycast(cam.center, pts[idx] - cam.center)  # target at t = 1
                seen[idx[t >= 1.0 - rel_tol]] = True
            else:
                depth = depth_maps[k] if depth_maps is not None else self.render_depth(cam)
                seen[idx[_depth_agrees(depth, u, v, z)]] = True
        return seen

    def render_depth(self, camera: Camera) -> np.ndarray:
        """z-depth [H, W] float64 only (inf where nothing is hit)."""
        o, rd = self.camera_rays(camera)
        return self.raycast(o, rd)[0].reshape(camera.height, camera.width)

    def sample_points(self, n: int, seed: int = 0, cameras: Sequence[Camera] | None = None,
                      exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """n ground-truth surface samples, uniform by area: xyz [n, 3] float64, rgb [n, 3] uint8.

        With `cameras`, only surface seen by at least one of them is sampled (what a
        reconstruction from those views can recover); rejection sampling, so still uniform.
        Visibility is exact (ray cast per sample) for up to 2 cameras, else tested against the
        cameras' depth maps (`visible_from`); `exact` overrides."""
        if cameras is not None and exact is None:
            exact = len(cameras) <= 2
        depth_maps = None
        if cameras is not None and not exact:  # render each camera's depth once
            depth_maps = [self.render_depth(c) for c in cameras]
        rng = np.random.default_rng(seed)
        areas = np.array([p.area for p in self.primitives])
        probs = areas / areas.sum()
        xyz_parts, idx_parts, have, rate = [], [], 0, 0.5
        for _ in range(64):
            m = int(min(max(1.2 * (n - have) / max(rate, 0.02), 1024), 4_000_000))
            which = rng.choice(len(self.primitives), size=m, p=probs)
            pts = np.zeros((m, 3))
            for i in np.unique(which):
                sel = which == i
                pts[sel] = self.primitives[i].sample(int(sel.sum()), rng)
            keep = self._on_visible_surface(pts, which)
            if cameras is not None:
                keep &= self.visible_from(pts, cameras, exact=bool(exact), depth_maps=depth_maps)
            xyz_parts.append(pts[keep])
            idx_parts.append(which[keep])
            have += int(keep.sum())
            rate = max(keep.mean(), 1e-3)
            if have >= n:
                break
        xyz = np.concatenate(xyz_parts)[:n]
        idx = np.concatenate(idx_parts)[:n]
        return xyz, self.shade(xyz, idx)

    def _on_visible_surface(self, pts: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Drop samples buried inside another primitive (a box standing in the floor, a trunk in a crown)."""
        keep = np.ones(len(pts), bool)
        for j, prim in enumerate(self.primitives):
            if isinstance(prim, Sphere):
                inside = np.linalg.norm(pts - prim.center, axis=1) < prim.radius * (1 - 1e-9)
            elif isinstance(prim, Box) and not prim.is_room:
                loc = np.abs((pts - prim.center) @ prim.R)
                inside = np.all(loc < prim.half * (1 - 1e-9), axis=1)
            else:
                continue
            keep &= ~(inside & (which != j))
        return keep

    # ---- cameras
    def default_camera(self, width: int, height: int) -> Camera:
        """The input view: identity pose, `fov_deg` across the long side, centred principal point."""
        return Camera(intrinsics_from_fov(width, height, self.fov_deg), np.eye(4), width, height)

    def path(self, name: str, n_frames: int, width: int, height: int) -> list[Camera]:
        """A smooth camera path starting at the input view (frame 0 = default camera).

        orbit / up / left / right: the standard planners (worldstereo.cameras.plan_trajectory)
        about the scene's pivot, with side turns of 60° and 30° elevation so paths stay inside the
        scene; forward: a dolly towards the pivot by 40 % of its distance; sweep: a sideways
        translation of ±25 % of the pivot distance, looking straight ahead."""
        K = self.default_camera(width, height).K
        if name in ("orbit", "up", "left", "right"):
            return self._planned_path(name, n_frames, width, height, K)
        if name not in ("forward", "sweep"):
            raise ValueError(f"unknown path {name!r}; choose from {', '.join(PATH_NAMES)}")
        return [Camera(K.copy(), c2w, width, height) for c2w in _straight_path_c2w(name, n_frames, self.pivot_depth)]

    def _planned_path(self, name: str, n_frames: int, width: int, height: int, K: np.ndarray) -> list[Camera]:
        """orbit / up / left / right from the standard planners; the orbit eased in from the input view."""
        d = self.pivot_depth
        cfg = PlannerConfig(frames=n_frames, up_deg=30.0, side_deg=60.0, orbit_radius=0.2)
        cams = plan_trajectory(name, K, width, height, d, cfg).cameras
        if name == "orbit":  # start at the input view: ease in from the origin onto the circle
            s = np.sin(0.5 * np.pi * np.linspace(0, 1, n_frames)) if n_frames > 1 else np.ones(1)
            pivot = np.array([0.0, 0.0, d])
            cams = [Camera(K.copy(), look_at(si * c.center, pivot), width, height) for si, c in zip(s, cams)]
        return cams


def _straight_path_c2w(name: str, n_frames: int, pivot_depth: float) -> list[np.ndarray]:
    """c2w [4, 4] per frame of the forward dolly (to 40 % of the pivot distance) or the sideways
    sweep (±25 % of it), both looking straight ahead."""
    c2ws = []
    for ti in np.linspace(0.0, 1.0, n_frames):
        T = np.eye(4)
        if name == "forward":
            T[2, 3] = 0.4 * pivot_depth * ti
        else:
            T[0, 3] = 0.25 * pivot_depth * math.sin(2 * math.pi * ti)
        c2ws.append(T)
    return c2ws


def _project_inside(cam: Camera, pts: np.ndarray, rest: np.ndarray) -> tuple[np.ndarray, ...]:
    """Of the points pts[rest], those in front of `cam` that project inside its image: their indices
    into pts [M], pixel coordinates u, v [M] and camera depth z [M]."""
    w2c = cam.w2c
    p = pts[rest]
    x = p[:, 0] * w2c[0, 0] + p[:, 1] * w2c[0, 1] + p[:, 2] * w2c[0, 2] + w2c[0, 3]
    y = p[:, 0] * w2c[1, 0] + p[:, 1] * w2c[1, 1] + p[:, 2] * w2c[1, 2] + w2c[1, 3]
    z = p[:, 0] * w2c[2, 0] + p[:, 1] * w2c[2, 1] + p[:, 2] * w2c[2, 2] + w2c[2, 3]
    front = z > 1e-6
    rest, x, y, z = rest[front], x[front], y[front], z[front]
    u = cam.K[0, 0] * x / z + cam.K[0, 2]
    v = cam.K[1, 1] * y / z + cam.K[1, 2]
    inside = (u >= -0.5) & (u < cam.width - 0.5) & (v >= -0.5) & (v < cam.height - 0.5)
    return rest[inside], u[inside], v[inside], z[inside]


def _depth_agrees(depth: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """[M] bool: the depth map [H, W] at one of the 4 pixels around (u, v) is within 2 % of z."""
    H, W = depth.shape
    u0 = np.floor(u).astype(np.int64)
    v0 = np.floor(v).astype(np.int64)
    ok = np.zeros(len(z), bool)
    for du in (0, 1):
        for dv in (0, 1):
            uu = np.clip(u0 + du, 0, W - 1)
            vv = np.clip(v0 + dv, 0, H - 1)
            ok |= np.abs(depth[vv, uu] - z) <= 0.02 * z
    return ok
