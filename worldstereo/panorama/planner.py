"""Trajectories for a panorama: from the middle three non-overlapping level views of the bank
(views 0, 5, 8: yaw 0°, 120°, 240°), either the release's per-view set or the project's standard
set, as worldstereo.cameras Trajectory objects in the panorama's world frame.

The release's per-view set (facts read from its example panorama's view*/traj*/camera.json,
in each start view's own frame, pivot P on the view's axis at distance d):
  * right  ("right-rotation"): the camera circles the vertical axis through P, moving right
    (it turns left to keep looking at P) by `side_deg`;
  * left   ("left-rotation"): the mirror image;
  * aerial ("up-right-aerial"): first half of the frames rise on an arc about P to `aerial_up_deg`
    elevation (looking down at P), the rest circle right at that height by `aerial_side_deg`.
The release picks the angles per view and scene (its example: 53.3° or 120° sideways, 45° up
then 60° right); our default sideways angle, 60°, makes the three views' left and right
rotations meet halfway between neighbouring start views.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

import numpy as np

from worldstereo.cameras import Camera, PlannerConfig, Trajectory, look_at, plan_trajectory
from worldstereo.errors import InputError
from worldstereo.panorama.bank import MIDDLE_VIEWS
from worldstereo.panorama.equirect import points_to_pixel
from worldstereo.panorama.views import distance_to_view_depth

PanoSet = Literal["release", "standard"]
RELEASE_KINDS = ("right", "left", "aerial")
STANDARD_KINDS = ("orbit", "up", "right", "left")


@dataclass
class PanoPlannerConfig:
    """Which trajectories to plan from a panorama's bank, and their shape."""

    set: PanoSet = "release"
    """"release": right, left, aerial per start view (the release's per-view set);
    "standard": orbit, up, right, left per start view (cameras.plan_trajectory)."""
    views: tuple[int, ...] = MIDDLE_VIEWS
    """Bank indices of the start views (default: the three non-overlapping level views)."""
    frames: int = 21
    """Frames per trajectory (the release: 21)."""
    side_deg: float = 60.0
    """Release set: how far `right` / `left` circle about the pivot."""
    aerial_up_deg: float = 45.0
    """Release set: elevation the `aerial` rises to about the pivot."""
    aerial_side_deg: float = 60.0
    """Release set: how far the `aerial` then circles right at that height."""
    pivot_scale: float = 1.0
    """Pivot distance = pivot_scale × the start view's median depth."""
    standard: PlannerConfig = field(default_factory=PlannerConfig)
    """Standard set: its angles and radius (its `frames` is overridden by `frames`)."""


def _orbit_eye(d: float, elev_rad: float, side_rad: float) -> np.ndarray:
    """Eye on the sphere of radius d about the pivot P = (0, 0, d) in the start view's frame:
    `side` turns about the vertical through P (positive: the camera moves to +x, right),
    `elev` lifts it (towards −y, up). (0, 0) is the start camera's centre, the origin."""
    horiz = np.array([math.sin(side_rad), 0.0, -math.cos(side_rad)])
    return np.array([0.0, 0.0, d]) + d * (math.cos(elev_rad) * horiz + math.sin(elev_rad) * np.array([0.0, -1.0, 0.0]))


def release_view_path(kind: str, d: float, cfg: PanoPlannerConfig) -> list[np.ndarray]:
    """Local c2w [4, 4] per frame (in the start view's frame) of one release-set trajectory."""
    n = cfg.frames
    if kind in ("right", "left"):
        sign = 1.0 if kind == "right" else -1.0
        angles = [(0.0, sign * a) for a in np.linspace(0.0, math.radians(cfg.side_deg), n)]
    elif kind == "aerial":
        n_up = max(1, n // 2)  # the release: 10 of 21 frames rise (5° steps), 11 circle
        up = math.radians(cfg.aerial_up_deg)
        rise = [(e, 0.0) for e in np.linspace(0.0, up, n_up)]
        side = [(up, math.radians(cfg.aerial_side_deg) * k / (n - n_up)) for k in range(1, n - n_up + 1)]
        angles = rise + side
    else:
        raise ValueError(f"unknown release trajectory {kind!r}")
    pivot = np.array([0.0, 0.0, d])
    return [look_at(_orbit_eye(d, e, s), pivot) for e, s in angles]


def plan_panorama(bank_cameras: Sequence[Camera], pivot_depths_m: Mapping[int, float],
                  cfg: PanoPlannerConfig = PanoPlannerConfig()) -> list[Trajectory]:
    """Trajectories from the start views `cfg.views` of the bank, in plan order.

    bank_cameras: the bank's cameras (bank.bank_cameras or read_bank_cameras), world frame.
    pivot_depths_m: bank index → median depth of that view (pivot_depths_from_distance).
    Order: kind by kind, each for every start view (release set: all rights, all lefts, then the
    aerials): the level rotations start where the bank already holds memory, and the aerials,
    which look down on what the rotations saw, come last and find it in the memory.
    Names: "view{k}_{kind}", k = position in cfg.views (the release's view0 / view1 / view2).
    Frame 0 of every trajectory is its start view's camera.
    """
    kinds = RELEASE_KINDS if cfg.set == "release" else STANDARD_KINDS
    out = []
    for kind in kinds:
        for k, idx in enumerate(cfg.views):
            start = bank_cameras[idx]
            d = cfg.pivot_scale * float(pivot_depths_m[idx])
            if cfg.set == "release":
                local = release_view_path(kind, d, cfg)
            else:
                std = PlannerConfig(frames=cfg.frames, up_deg=cfg.standard.up_deg, side_deg=cfg.standard.side_deg,
                                    orbit_radius=cfg.standard.orbit_radius)
                local = [c.c2w for c in plan_trajectory(kind, start.K, start.width, start.height, d, std).cameras]
            cams = [Camera(start.K.copy(), start.c2w @ T, start.width, start.height) for T in local]
            out.append(Trajectory(cams, f"view{k}_{kind}"))
    return out


def pivot_depths_from_distance(distance_m: np.ndarray, bank_cameras: Sequence[Camera],
                               views: Sequence[int] = MIDDLE_VIEWS) -> dict[int, float]:
    """Median z-depth (metres) of each start view, read from the panorama's distance map."""
    out = {}
    for idx in views:
        z = distance_to_view_depth(distance_m, bank_cameras[idx])
        valid = z > 0
        if not valid.any():
            raise InputError(None, f"the panorama's depth has no valid pixel in bank view {idx}: cannot place its pivot")
        out[idx] = float(np.median(z[valid]))
    return out


INSIDE_MARGIN = 0.1
"""A planned camera counts as inside the seen space when it is at least this fraction nearer to the
panorama's centre than the surface the panorama saw in its direction."""


def inside_seen_space(centres: np.ndarray, distance_m: np.ndarray) -> np.ndarray:
    """[N] bool: camera centres [N, 3] in space the panorama saw through (or in a direction of unknown
    distance, where nothing says otherwise)."""
    from worldstereo.panorama.equirect import EquirectCamera, nearest_surface

    H, W = distance_m.shape
    near = nearest_surface(distance_m)
    eq = EquirectCamera(W, H)
    u, v, _ = points_to_pixel(centres, W, H)
    unknown = near[np.clip(np.round(v).astype(int), 0, H - 1), np.mod(np.round(u).astype(int), W)] <= 0
    return eq.free_space(centres, near, INSIDE_MARGIN) | unknown


def plan_inside(bank_cameras: Sequence[Camera], pivot_depths_m: Mapping[int, float], distance_m: np.ndarray,
                cfg: PanoPlannerConfig = PanoPlannerConfig(), step_deg: float = 5.0) -> tuple[list[Trajectory], dict[str, float]]:
    """plan_panorama, with each release aerial lowered (aerial_up_deg in steps of `step_deg`) until
    all its cameras stay inside the space the panorama saw (inside_seen_space): in a room, a 45°
    rise about a pivot a few metres away goes through the ceiling, and frames made from outside
    add points outside the room. Returns the trajectories and {name: lowered angle} for those lowered."""
    trajs = plan_panorama(bank_cameras, pivot_depths_m, cfg)
    lowered: dict[str, float] = {}
    if cfg.set != "release":
        return trajs, lowered
    for i, t in enumerate(trajs):
        if not t.name.endswith("_aerial"):
            continue
        up = cfg.aerial_up_deg
        while up > 0 and not inside_seen_space(t.c2w()[:, :3, 3], distance_m).all():
            up = max(0.0, up - step_deg)
            lower = dataclasses.replace(cfg, aerial_up_deg=up)
            t = next(x for x in plan_panorama(bank_cameras, pivot_depths_m, lower) if x.name == trajs[i].name)
            lowered[t.name] = up
        trajs[i] = t
    return trajs, lowered
