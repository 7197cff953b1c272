"""Equirect ↔ perspective views: cut the bank's views out of a panorama (colour filtered, depth
nearest and converted to z-depth), paste views back into an equirect (feathered blend), and
read / write the release's pano_bank folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from worldstereo.cameras import Camera
from worldstereo.errors import InputError
from worldstereo.geometry import pixel_grid
from worldstereo.panorama.bank import (RELEASE_LAYOUT, BankLayout, bank_cameras, read_bank_cameras, write_bank_cameras,
                                       yaw_pitch_c2w)
from worldstereo.panorama.equirect import dirs_to_pixel, equirect_rays
from worldstereo.panorama.sampling import Lookup, RipMap, plan_lookup, read, sample, sample_nearest


@dataclass
class PanoView:
    """One perspective view cut from the panorama; `depth_m` is z-depth (0 = unknown) or None."""

    index: int
    camera: Camera
    rgb: np.ndarray  # [h, w, 3] uint8
    depth_m: np.ndarray | None  # [h, w] float32


def camera_rays(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World directions [h, w, 3] of a centred camera's pixels (K⁻¹[u v 1], rotated by c2w) and
    their length in camera units with z = 1 [h, w] (z-depth = distance / that length)."""
    u, v = pixel_grid(cam.height, cam.width)
    ray = np.stack([(u - cam.K[0, 2]) / cam.K[0, 0], (v - cam.K[1, 2]) / cam.K[1, 1], np.ones_like(u)], -1)
    return np.einsum("ij,hwj->hwi", cam.c2w[:3, :3], ray), np.linalg.norm(ray, axis=-1)


def view_maps(cam: Camera, pano_width: int, pano_height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(map_u, map_v) equirect coordinates [h, w] seen by each pixel of `cam` (which must sit at
    the panorama's centre), and the pixel's ray length for z-depth."""
    dirs, ray_len = camera_rays(cam)
    u, v = dirs_to_pixel(dirs, pano_width, pano_height)
    return u, v, ray_len


def equirect_to_view(pano: np.ndarray | RipMap, cam: Camera, interp: str = "linear") -> np.ndarray:
    """Colour of `cam`'s view, prefiltered from the equirect ([H, W(, C)] or its RipMap) → float32."""
    rip = pano if isinstance(pano, RipMap) else RipMap(pano, "equirect")
    u, v, _ = view_maps(cam, rip.width, rip.height)
    return sample(rip, u, v, interp)


def distance_to_view_depth(distance_m: np.ndarray, cam: Camera) -> np.ndarray:
    """z-depth [h, w] float32 of `cam` from an equirect distance map (nearest pixel, no blending
    across depth edges). 0 / inf in the source stay holes (0)."""
    H, W = distance_m.shape
    u, v, ray_len = view_maps(cam, W, H)
    dist = sample_nearest(distance_m, u, v, "equirect").astype(np.float64)
    z = np.where(np.isfinite(dist) & (dist > 0), dist / ray_len, 0.0)
    return z.astype(np.float32)


def make_bank(rgb: np.ndarray, distance_m: np.ndarray | None = None,
              layout: BankLayout = RELEASE_LAYOUT) -> list[PanoView]:
    """The perspective bank of an equirect image [H, 2H, 3] uint8 (+ its distance map [H, 2H]).

    Views of one pitch differ only by yaw, and a yaw is a shift of the equirect's columns: the
    maps and filter weights are planned once per pitch and read shifted for every yaw.
    """
    H, W = rgb.shape[:2]
    rip = RipMap(rgb, "equirect")
    cams = bank_cameras(layout)
    plans: dict[float, tuple[Lookup, np.ndarray]] = {}
    views = []
    for i, ((yaw, pitch), cam) in enumerate(zip(layout.directions_deg(), cams)):
        if pitch not in plans:
            u, v, ray_len = view_maps(Camera(cam.K, yaw_pitch_c2w(0.0, pitch), cam.width, cam.height), W, H)
            plans[pitch] = (plan_lookup(u, v, W, "equirect", rip.max_x, rip.max_y), ray_len)
        lookup, ray_len = plans[pitch]
        shift = yaw / 360.0 * W
        img = np.clip(np.round(read(rip, lookup, u_shift=shift)), 0, 255).astype(np.uint8)
        depth = None
        if distance_m is not None:
            dist = sample_nearest(distance_m, lookup.map_u + np.float32(shift), lookup.map_v, "equirect")
            depth = np.where(np.isfinite(dist) & (dist > 0), dist / ray_len, 0.0).astype(np.float32)
        views.append(PanoView(i, cam, img, depth))
    return views


# --------------------------------------------------------------------------- views → equirect


def _covered_box(cam: Camera, W: int, H: int) -> tuple[int, slice]:
    """(roll, rows) of the equirect region the view can see: after rolling columns by `roll`
    the region does not cross the seam; rows is the latitude band (to a pole if it is in view)."""
    w, h = cam.width, cam.height
    edge = np.concatenate([np.stack([np.arange(w), np.full(w, -0.5)], 1), np.stack([np.arange(w), np.full(w, h - 0.5)], 1),
                           np.stack([np.full(h, -0.5), np.arange(h)], 1), np.stack([np.full(h, w - 0.5), np.arange(h)], 1)])
    ray = np.stack([(edge[:, 0] - cam.K[0, 2]) / cam.K[0, 0], (edge[:, 1] - cam.K[1, 2]) / cam.K[1, 1], np.ones(len(edge))], 1)
    border = ray @ cam.c2w[:3, :3].T
    u, v = dirs_to_pixel(border, W, H)
    fwd_u, _ = dirs_to_pixel(cam.c2w[:3, 2], W, H)
    roll = int(W // 2 - np.floor(fwd_u + 0.5))
    v0, v1 = int(np.floor(v.min())) - 1, int(np.ceil(v.max())) + 2
    for pole_row, pole in ((0, np.array([0.0, -1.0, 0.0])), (H, np.array([0.0, 1.0, 0.0]))):
        z = cam.c2w[:3, :3].T @ pole
        if z[2] > 0:
            px = cam.K @ (z / z[2])
            if -0.5 <= px[0] <= cam.width - 0.5 and -0.5 <= px[1] <= cam.height - 0.5:
                v0, v1 = (0, v1) if pole_row == 0 else (v0, H)
    return roll, slice(max(v0, 0), min(v1, H))


def views_to_equirect(images: Sequence[np.ndarray], cameras: Sequence[Camera], height: int,
                      feather: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Blend perspective views (all centred at the panorama's centre) into an equirect [H, 2H(, C)].

    Each view contributes where it sees, weighted by min(1 − |x_ndc|, 1 − |y_ndc|)^feather (1 at
    its centre, 0 at its border) so seams between views fade; colour is read prefiltered.
    Returns (equirect float32, weight sum [H, W]); weight 0 = no view sees the pixel.
    """
    W = 2 * height
    first = np.asarray(images[0])
    out = np.zeros((height, W) + first.shape[2:], np.float64)
    wsum = np.zeros((height, W), np.float64)
    rays_all = equirect_rays(height, W)
    for img, cam in zip(images, cameras):
        roll, rows = _covered_box(cam, W, height)
        cols = np.mod(np.arange(W) - roll, W)  # rolled position k holds equirect column cols[k]
        rays = rays_all[rows][:, cols]  # [h, W, 3]
        cam_dirs = np.einsum("ji,hwj->hwi", cam.c2w[:3, :3], rays)  # Rᵀ d
        z = cam_dirs[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = cam.K[0, 0] * cam_dirs[..., 0] / z + cam.K[0, 2]
            mv = cam.K[1, 1] * cam_dirs[..., 1] / z + cam.K[1, 2]
        nx = (mu - (cam.width - 1) / 2) / (cam.width / 2)
        ny = (mv - (cam.height - 1) / 2) / (cam.height / 2)
        w = np.where(z > 1e-6, np.clip(np.minimum(1 - np.abs(nx), 1 - np.abs(ny)), 0, 1), 0.0) ** feather
        ks = np.flatnonzero(w.any(axis=0))
        if len(ks) == 0:
            continue
        k0, k1 = ks[0], ks[-1] + 1  # contiguous in rolled columns
        mu_b = np.nan_to_num(mu[:, k0:k1], nan=-10.0, posinf=-10.0, neginf=-10.0)
        mv_b = np.nan_to_num(mv[:, k0:k1], nan=-10.0, posinf=-10.0, neginf=-10.0)
        wb = w[:, k0:k1]
        rip = RipMap(np.asarray(img), "plain")
        lookup = plan_lookup(mu_b, mv_b, rip.width, "plain", rip.max_x, rip.max_y, valid=wb > 0)
        vals = read(rip, lookup).astype(np.float64)
        out[rows, cols[k0:k1]] += vals * (wb[..., None] if vals.ndim == 3 else wb)  # columns unique: += is safe
        wsum[rows, cols[k0:k1]] += wb
    safe = np.maximum(wsum, 1e-12)
    return (out / (safe[..., None] if out.ndim == 3 else safe)).astype(np.float32), wsum


# --------------------------------------------------------------------------- the release's folder


def write_pano_bank(folder: str | Path, views: Sequence[PanoView]) -> None:
    """The release's layout: <folder>/cameras.json + images/0000.png … (colour only; the
    release's bank carries no depth)."""
    from worldstereo.io.images import write_image

    folder = Path(folder)
    for v in views:
        write_image(folder / "images" / f"{v.index:04d}.png", v.rgb)
    write_bank_cameras(folder / "cameras.json", [v.camera for v in views])


def read_pano_bank(folder: str | Path) -> list[PanoView]:
    """Read a release-style pano_bank folder (cameras.json + images/<key>.png) into views in our
    frame and convention (depth None). Each image must exist and have one size for all views."""
    from worldstereo.io.images import read_image

    folder = Path(folder)
    if not (folder / "cameras.json").is_file():
        raise InputError(folder, "not a pano_bank folder: cameras.json missing")
    cams = read_bank_cameras(folder / "cameras.json")  # validates the file
    keys = sorted(json.loads((folder / "cameras.json").read_text()))
    h, w = read_image(folder / "images" / f"{keys[0]}.png").shape[:2]
    views = []
    for i, (key, cam) in enumerate(zip(keys, cams)):
        path = folder / "images" / f"{key}.png"
        rgb = read_image(path)
        cam = Camera(cam.K, cam.c2w, w, h)
        if rgb.shape[:2] != (h, w):
            raise InputError(path, f"view is {rgb.shape[1]}x{rgb.shape[0]}, the bank's first view {w}x{h}")
        views.append(PanoView(i, cam, rgb, None))
    return views
