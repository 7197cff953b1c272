"""Procedural scenes with exact ground truth: analytic primitives, solid textures, numpy ray casting.

A scene is a list of primitives (rectangles, oriented boxes, spheres), each with a procedural
*solid* texture (colour is a function of the 3D surface point, so every view sees the same colour
at the same point) and view-independent Lambert shading. Rendering casts one ray per pixel
centre and keeps the nearest hit, so depth, K and poses are exact: a pixel unprojected with its
depth and projected into another view lands on the same surface point.

World frame = the default ("input") camera's frame: OpenCV axes (x right, y down, z forward),
the input camera at the origin looking down +z, "up" is −y.

>>> scene = make_scene("room", seed=3)
>>> cam = scene.default_camera(256, 192)
>>> rgb, depth = scene.render(cam)            # [192, 256, 3] uint8, [192, 256] float32 (inf = sky)
>>> xyz, col = scene.sample_points(100_000, seed=0, cameras=[cam])   # visible GT surface samples
>>> path = scene.path("orbit", 21, 256, 192)   # list[Camera]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from worldstereo.cameras import Camera, PlannerConfig, intrinsics_from_fov, look_at, plan_trajectory
from worldstereo.geometry import pixel_grid

SceneKind = Literal["room", "objects", "outdoor"]
SCENE_KINDS: tuple[str, ...] = ("room", "objects", "outdoor")
PathName = Literal["orbit", "up", "left", "right", "forward", "sweep"]
PATH_NAMES: tuple[str, ...] = ("orbit", "up", "left", "right", "forward", "sweep")

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

    pattern: Literal["checker", "stripes", "noise", "bricks"]
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


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


# --------------------------------------------------------------------------- the scene


@dataclass
class SyntheticScene:
    """Analytic primitives with exact ground truth. `pivot_depth`: distance of the point the camera
    paths turn around, on the input optical axis (chosen so no path passes through geometry)."""

    kind: str
    seed: int
    primitives: list = field(default_factory=list)
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
    def visible_from(self, pts: np.ndarray, cameras: Sequence[Camera], exact: bool = True,
                     rel_tol: float = 1e-6) -> np.ndarray:
        """[N] bool: points (on the surface) seen, unoccluded and inside the image, by any camera.

        exact: cast a ray to every candidate point (slow for many cameras); else compare with each
        camera's rendered depth at the 4 pixels around the projection (2 % relative tolerance)."""
        seen = np.zeros(len(pts), bool)
        for cam in cameras:
            rest = np.flatnonzero(~seen)
            if len(rest) == 0:
                break
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
            if not inside.any():
                continue
            idx, u, v, z = rest[inside], u[inside], v[inside], z[inside]
            if exact:
                t, _ = self.raycast(cam.center, pts[idx] - cam.center)  # target at t = 1
                seen[idx[t >= 1.0 - rel_tol]] = True
                continue
            depth = cam.depth if isinstance(cam, _DepthCachedCamera) else self.render_depth(cam)
            u0 = np.floor(u).astype(np.int64)
            v0 = np.floor(v).astype(np.int64)
            ok = np.zeros(len(idx), bool)
            for du in (0, 1):
                for dv in (0, 1):
                    uu = np.clip(u0 + du, 0, cam.width - 1)
                    vv = np.clip(v0 + dv, 0, cam.height - 1)
                    ok |= np.abs(depth[vv, uu] - z) <= 0.02 * z
            seen[idx[ok]] = True
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
        if cameras is not None and not exact:  # render each camera's depth once
            cameras = [_DepthCachedCamera(c, self.render_depth(c)) for c in cameras]
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
                keep &= self.visible_from(pts, cameras, exact=bool(exact))
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
            elif isinstance(prim, Box) and not getattr(prim, "_room", False):
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
        d = self.pivot_depth
        if name in ("orbit", "up", "left", "right"):
            cfg = PlannerConfig(frames=n_frames, up_deg=30.0, side_deg=60.0, orbit_radius=0.2)
            cams = plan_trajectory(name, K, width, height, d, cfg).cameras
            if name == "orbit":  # start at the input view: ease in from the origin onto the circle
                s = np.sin(0.5 * np.pi * np.linspace(0, 1, n_frames)) if n_frames > 1 else np.ones(1)
                pivot = np.array([0.0, 0.0, d])
                cams = [Camera(K.copy(), look_at(si * c.center, pivot), width, height) for si, c in zip(s, cams)]
            return cams
        t = np.linspace(0.0, 1.0, n_frames)
        if name == "forward":
            c2ws = []
            for ti in t:
                T = np.eye(4)
                T[2, 3] = 0.4 * d * ti
                c2ws.append(T)
        elif name == "sweep":
            c2ws = []
            for ti in t:
                T = np.eye(4)
                T[0, 3] = 0.25 * d * math.sin(2 * math.pi * ti)
                c2ws.append(T)
        else:
            raise ValueError(f"unknown path {name!r}; choose from {', '.join(PATH_NAMES)}")
        return [Camera(K.copy(), c2w, width, height) for c2w in c2ws]


@dataclass
class _DepthCachedCamera(Camera):
    """A camera carrying its rendered depth map, so visibility tests render it once."""

    def __init__(self, cam: Camera, depth: np.ndarray):
        super().__init__(cam.K, cam.c2w, cam.width, cam.height)
        self.depth = depth


# --------------------------------------------------------------------------- scene builders


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rotate(prims: list, R: np.ndarray) -> list:
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
    return tuple(float(x) for x in rng.uniform(lo, hi, 3))


def _texture(rng: np.random.Generator, scale: float, patterns=("checker", "stripes", "noise", "bricks")) -> Texture:
    return Texture(str(rng.choice(patterns)), _colour(rng), _colour(rng), scale * float(rng.uniform(0.7, 1.4)),
                   int(rng.integers(0, 2**31 - 1)))


def _ground(y: float, half: float, cz: float, tex: Texture) -> Rect:
    """A horizontal rectangle at height y (world y down), centred at (0, y, cz)."""
    return Rect(np.array([0.0, y, cz]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), half, half, tex)


def _objects_around(rng: np.random.Generator, floor_y: float, pivot: np.ndarray, radius: float, count: int,
                    size: tuple[float, float]) -> list:
    """Boxes (turned about the vertical) and spheres standing on the floor within `radius` of the pivot."""
    prims = []
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


def _room(rng: np.random.Generator) -> tuple[list, float]:
    eye_h = rng.uniform(1.3, 1.6)  # camera height above the floor; floor at y = +eye_h
    height = rng.uniform(3.6, 4.2)
    half_w = rng.uniform(4.0, 5.0)
    z0, z1 = -rng.uniform(1.5, 2.5), rng.uniform(6.0, 7.5)
    pivot_d = rng.uniform(2.5, 3.0)
    pitch = math.radians(rng.uniform(15, 22))
    room = Box(np.array([0.0, eye_h - height / 2, (z0 + z1) / 2]), np.eye(3),
               np.array([half_w, height / 2, (z1 - z0) / 2]), _texture(rng, 0.6, ("bricks", "noise", "stripes")))
    room._room = True  # type: ignore[attr-defined]
    floor = _ground(eye_h - 1e-4, min(half_w, (z1 - z0) / 2) - 1e-3, (z0 + z1) / 2, _texture(rng, 0.5, ("checker",)))
    floor.half_v = (z1 - z0) / 2 - 1e-3
    floor.half_u = half_w - 1e-3
    pivot = _level_pivot(pitch, pivot_d)
    prims = [room, floor] + _objects_around(rng, eye_h, pivot, 1.3, int(rng.integers(3, 6)), (0.4, 0.9))
    # a picture on the back wall
    prims.append(Rect(np.array([rng.uniform(-1.5, 1.5), eye_h - 1.8, z1 - 1e-3]), np.array([1.0, 0, 0]),
                      np.array([0, 1.0, 0]), rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.7), _texture(rng, 0.15)))
    return prims, pivot_d, pitch


def _objects(rng: np.random.Generator) -> tuple[list, float]:
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


def _outdoor(rng: np.random.Generator) -> tuple[list, float]:
    eye_h = rng.uniform(1.5, 1.8)
    pivot_d = rng.uniform(5.0, 7.0)
    pitch = math.radians(rng.uniform(4, 10))
    pivot = _level_pivot(pitch, pivot_d)
    prims: list = [_ground(eye_h, 35.0, pivot_d + 12.0, _texture(rng, 1.5, ("noise", "checker")))]
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


def _distance_to(prim, p: np.ndarray) -> np.ndarray:
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
        solid = isinstance(prim, Sphere) or (isinstance(prim, Box) and not getattr(prim, "_room", False))
        if solid and _distance_to(prim, centres).min() < clearance:
            continue
        keep.append(prim)
    scene.primitives = keep


# --------------------------------------------------------------------------- benchmark export


@dataclass
class ExportConfig:
    """What `write_scene` renders for one synthetic benchmark scene."""

    width: int = 256
    """Image width of the input view and path frames (pixels)."""
    height: int = 192
    """Image height (pixels)."""
    paths: tuple[str, ...] = ("orbit", "left")
    """Camera paths rendered as ground-truth frame sets (orbit, up, left, right, forward, sweep)."""
    frames: int = 21
    """Frames per path (frame 0 = the input view)."""
    gt_points: int = 200_000
    """Ground-truth surface samples, restricted to surface seen from the input view or a path."""
    depth_noise: float = 0.05
    """Per-frame depth distortion of the `recon/` frame sets (relative; 0 = exact): a random global
    scale and a smooth multiplicative warp per frame, the kind of inconsistency generated video has."""


def scene_name(kind: str, seed: int) -> str:
    return f"{kind}_{seed:03d}"


def _frames_results(renders: list, cams: Sequence[Camera], noise: float, rng: np.random.Generator):
    from worldstereo.io.results import FrameResults

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


def write_scene(kind: str, seed: int, out: Path, cfg: ExportConfig = ExportConfig()) -> dict:
    """Render one scene into `out/<kind>_<seed>/` and return its manifest entry (paths relative to `out`).

    Layout:
        input/image.png, input/depth.npy (float32 z-depth, metres, inf = nothing hit), input/K.json
        gt/points.ply                    GT surface samples (x, y, z float32, red, green, blue uint8)
        gt/trajectories/<path>.json      the path cameras (worldstereo trajectory JSON)
        gt/frames/<path>.npz             exact frames in the results.npz schema (0 = nothing hit)
        recon/<path>/exports/npz/results.npz   the same frames with per-frame depth distortion
                                         (input for reconstruct.py --scene recon/<path>)
    """
    import json

    from worldstereo.cameras import Trajectory, save_trajectory
    from worldstereo.io.atomic import atomic_path, atomic_write_text
    from worldstereo.io.images import write_image
    from worldstereo.io.ply import write_ply
    from worldstereo.io.results import save_results

    out = Path(out)
    name = scene_name(kind, seed)
    root = out / name
    scene = make_scene(kind, seed)
    cam = scene.default_camera(cfg.width, cfg.height)
    rgb, depth = scene.render(cam)
    write_image(root / "input" / "image.png", rgb)
    with atomic_path(root / "input" / "depth.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, depth)
    K = cam.K
    intr = [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]
    atomic_write_text(root / "input" / "K.json", json.dumps({"K": K.tolist(), "width": cfg.width, "height": cfg.height}))
    all_cams = [cam]
    entry_paths, entry_frames, entry_recon = {}, {}, {}
    rng = np.random.default_rng([seed, 7])
    for p in cfg.paths:
        cams = scene.path(p, cfg.frames, cfg.width, cfg.height)
        all_cams += cams[1::2]
        save_trajectory(Trajectory(cams, p), root / "gt" / "trajectories" / f"{p}.json")
        renders = [scene.render(c) for c in cams]
        save_results(root / "gt" / "frames" / f"{p}.npz", _frames_results(renders, cams, 0.0, rng))
        save_results(root / "recon" / p / "exports" / "npz" / "results.npz",
                     _frames_results(renders, cams, cfg.depth_noise, rng))
        entry_paths[p] = f"{name}/gt/trajectories/{p}.json"
        entry_frames[p] = f"{name}/gt/frames/{p}.npz"
        entry_recon[p] = f"{name}/recon/{p}"
    xyz, col = scene.sample_points(cfg.gt_points, seed=seed, cameras=all_cams)
    write_ply(root / "gt" / "points.ply", {"x": xyz[:, 0].astype(np.float32), "y": xyz[:, 1].astype(np.float32),
                                          "z": xyz[:, 2].astype(np.float32), "red": col[:, 0], "green": col[:, 1],
                                          "blue": col[:, 2]})
    fin = depth[np.isfinite(depth)]
    return {
        "name": name, "kind": kind, "seed": seed, "synthetic": True,
        "image": f"{name}/input/image.png", "depth": f"{name}/input/depth.npy",
        "intrinsics": intr, "width": cfg.width, "height": cfg.height,
        "gt_points": f"{name}/gt/points.ply", "trajectories": entry_paths, "frames": entry_frames,
        "recon": entry_recon, "median_depth": float(np.median(fin)) if len(fin) else None,
    }
