"""Benchmark manifests: the typed `ManifestEntry` per scene, read and checked before anything runs.

A manifest is `{"scenes": [entry, …]}` (or the bare list); utils.make_synthetic writes one. Paths
in an entry are relative to the manifest's folder. Keys read (others, like `frames`, are kept in
the file for other tools and ignored here):

    image         input photo (required)
    name          scene name, a plain folder name (default: the image's stem)
    depth         input depth (.npy / .png / .tif), passed to run_pipeline.py --depth
    intrinsics    [fx, fy, cx, cy] in pixels of the image
    scene_dir     where the scene is run (default: <out>/scenes/<name>)
    gt_points     ground-truth PLY (x, y, z) in the input camera's frame
    synthetic, kind, seed   a worldstereo.bench synthetic scene: GT regenerated from (kind, seed)
    median_depth  median GT depth of the input view (sets τ); default: from the GT points

>>> entries = read_manifest(Path("bench/synth/manifest.json"), out=Path("bench/results"))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from worldstereo.bench.synthetic_scene import SCENE_KINDS
from worldstereo.errors import InputError
from worldstereo.io.dataclass_json import read_json
from worldstereo.scene import SceneDir


@dataclass(frozen=True)
class ManifestEntry:
    """One benchmark scene, paths absolute. `run`: run the pipeline for it (False for --scene)."""

    name: str
    scene_dir: Path
    image: Optional[Path] = None
    depth: Optional[Path] = None
    gt_points: Optional[Path] = None
    intrinsics: Optional[tuple[float, float, float, float]] = None
    """fx, fy, cx, cy in pixels."""
    kind: Optional[str] = None
    """Synthetic scene kind (with `seed`): the ground truth is regenerated from them."""
    seed: Optional[int] = None
    median_depth: Optional[float] = None
    run: bool = True

    @property
    def synthetic(self) -> bool:
        return self.kind is not None and self.seed is not None

    @property
    def scene(self) -> SceneDir:
        return SceneDir(self.scene_dir)


def single_scene_entry(scene: Path, gt_points: Optional[Path]) -> ManifestEntry:
    """The entry for --scene DIR --gt-points GT.ply: a finished scene, scored, never run."""
    if gt_points is None:
        raise InputError(scene, "--scene needs --gt-points (a PLY in the scene's world frame)")
    if not scene.is_dir():
        raise InputError(scene, "scene folder not found")
    if not gt_points.is_file():
        raise InputError(gt_points, "ground-truth point cloud not found")
    return ManifestEntry(name=scene.resolve().name, scene_dir=scene.resolve(), gt_points=gt_points.resolve(), run=False)


def read_manifest(path: Path, out: Path) -> list[ManifestEntry]:
    """Every entry of the manifest at `path`, checked; scenes without scene_dir go to <out>/scenes/<name>."""
    data = read_json(path, "manifest not found", "JSON manifest")
    scenes = data.get("scenes") if isinstance(data, dict) else data
    if not isinstance(scenes, list) or not scenes:
        raise InputError(path, "manifest has no 'scenes' list")
    reader = _EntryReader(path, path.resolve().parent, out)
    entries = [reader.entry(i, raw) for i, raw in enumerate(scenes)]
    names = [e.name for e in entries]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise InputError(path, f"scene names must be unique ('{dup}' appears {names.count(dup)} times)")
    return entries


class _EntryReader:
    """Reads scenes[i] of one manifest; each problem is one InputError naming the manifest and the key."""

    def __init__(self, manifest: Path, base: Path, out: Path):
        self.manifest, self.base, self.out = manifest, base, out

    def fail(self, where: str, problem: str) -> InputError:
        return InputError(self.manifest, f"{where}: {problem}")

    def entry(self, i: int, raw: Any) -> ManifestEntry:
        where = f"scenes[{i}]"
        if not isinstance(raw, dict) or "image" not in raw:
            raise self.fail(where, "needs at least an 'image'")
        image = self.path(raw, "image", where)
        name = raw.get("name", Path(str(raw["image"])).stem)
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise self.fail(f"{where}.name", f"must be a plain folder name, got {name!r}")
        kind, seed = self.synthetic(raw, where)
        gt_points = self.path(raw, "gt_points", where)
        if gt_points is None and kind is None:
            raise self.fail(where, "no ground truth: give gt_points (or synthetic: true with kind and seed)")
        scene_dir = self.path(raw, "scene_dir", where, must_exist=False) or (self.out / "scenes" / name).resolve()
        return ManifestEntry(name=name, scene_dir=scene_dir, image=image, depth=self.path(raw, "depth", where),
                             gt_points=gt_points, intrinsics=self.intrinsics(raw, where), kind=kind, seed=seed,
                             median_depth=self.positive(raw, "median_depth", where))

    def path(self, raw: dict, key: str, where: str, must_exist: bool = True) -> Optional[Path]:
        value = raw.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"must be a path string, got {value!r}")
        p = (self.base / value).resolve()
        if must_exist and not p.exists():
            raise self.fail(f"{where}.{key}", f"{p} not found")
        return p

    def intrinsics(self, raw: dict, where: str) -> Optional[tuple[float, float, float, float]]:
        value = raw.get("intrinsics")
        if value is None:
            return None
        ok = isinstance(value, list) and len(value) == 4 and all(_is_number(x) for x in value)
        if not ok or not all(math.isfinite(x) for x in value) or min(value[0], value[1]) <= 0:
            raise self.fail(f"{where}.intrinsics", f"must be [fx, fy, cx, cy] (finite, fx, fy > 0), got {value!r}")
        fx, fy, cx, cy = (float(x) for x in value)
        return fx, fy, cx, cy

    def synthetic(self, raw: dict, where: str) -> tuple[Optional[str], Optional[int]]:
        if not raw.get("synthetic"):
            return None, None
        kind, seed = raw.get("kind"), raw.get("seed")
        if kind not in SCENE_KINDS:
            raise self.fail(f"{where}.kind",
                            f"unknown synthetic scene kind {kind!r}; choose from {', '.join(SCENE_KINDS)}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise self.fail(f"{where}.seed", f"a synthetic scene needs an integer seed, got {seed!r}")
        return kind, seed

    def positive(self, raw: dict, key: str, where: str) -> Optional[float]:
        value = raw.get(key)
        if value is None:
            return None
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise self.fail(f"{where}.{key}", f"must be a positive number, got {value!r}")
        return float(value)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
