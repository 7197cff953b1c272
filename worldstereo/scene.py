"""SceneDir: the on-disk scene folder shared by all stages, its manifest and stage records."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from worldstereo import SCHEMA_VERSION, __version__
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_write_text, clean_stale_temps


def config_hash(*parts: Any) -> str:
    """Stable short hash of dataclasses / JSON-able values (a stage's config and its inputs)."""

    def norm(x):
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {k: norm(v) for k, v in dataclasses.asdict(x).items()}
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in sorted(x.items())}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, float):
            return round(x, 12)
        return x

    blob = json.dumps([norm(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class SceneDir:
    """Paths and manifest of one scene folder (layout in DESIGN.md)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ---- paths
    @property
    def manifest_path(self) -> Path:
        return self.root / "scene.json"

    @property
    def input_image(self) -> Path:
        return self.root / "input" / "image.png"

    @property
    def input_depth(self) -> Path:
        return self.root / "input" / "depth.npy"

    def trajectory(self, name: str) -> Path:
        return self.root / "trajectories" / f"{name}.json"

    def conditions(self, name: str) -> Path:
        return self.root / "conditions" / name

    def video(self, name: str) -> Path:
        return self.root / "videos" / f"{name}.mp4"

    def frames(self, name: str) -> Path:
        """Lossless generated frames, depth and confidence of one trajectory."""
        return self.root / "frames" / name

    @property
    def memory_bank(self) -> Path:
        return self.root / "memory_bank"

    @property
    def cache_ply(self) -> Path:
        return self.root / "cache.ply"

    @property
    def results_npz(self) -> Path:
        return self.root / "exports" / "npz" / "results.npz"

    @property
    def align_dir(self) -> Path:
        return self.root / "align"

    def gs_dir(self, renderer: str) -> Path:
        return self.root / f"gs_{renderer}"

    # ---- manifest
    def exists(self) -> bool:
        return self.manifest_path.exists()

    def load(self) -> dict:
        """Read scene.json; an unreadable or newer-schema manifest is a one-line InputError."""
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise InputError(self.manifest_path, "no scene here: run run_pipeline.py first (or check --scene)")
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(self.manifest_path, f"unreadable scene manifest ({e.__class__.__name__})")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise InputError(self.manifest_path, "scene manifest has no schema_version")
        if version > SCHEMA_VERSION:
            raise InputError(
                self.manifest_path,
                f"scene was written by a newer schema (v{version}; this worldstereo {__version__} reads v{SCHEMA_VERSION}): upgrade worldstereo",
            )
        data.setdefault("stages", {})
        return data

    def load_or_new(self) -> dict:
        if self.exists():
            return self.load()
        return {"schema_version": SCHEMA_VERSION, "worldstereo": __version__, "stages": {}}

    def save(self, data: dict) -> None:
        data["schema_version"] = SCHEMA_VERSION
        atomic_write_text(self.manifest_path, json.dumps(data, indent=1, default=str))

    def update(self, **fields: Any) -> dict:
        data = self.load_or_new()
        data.update(fields)
        self.save(data)
        return data

    # ---- stage records
    def stage_done(self, stage: str, chash: str) -> bool:
        """True when `stage` finished with this config hash and all its outputs still exist."""
        if not self.exists():
            return False
        rec = self.load()["stages"].get(stage)
        if not rec or not rec.get("finished") or rec.get("config_hash") != chash:
            return False
        return all((self.root / o).exists() for o in rec.get("outputs", []))

    def stage_record(self, stage: str) -> dict | None:
        return self.load()["stages"].get(stage) if self.exists() else None

    def record_stage(self, stage: str, chash: str, outputs: list[str | Path], seconds: float, **extra: Any) -> None:
        data = self.load_or_new()
        rel = [str(Path(o).relative_to(self.root)) if Path(o).is_absolute() else str(o) for o in outputs]
        data["stages"][stage] = {
            "config_hash": chash,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "outputs": rel,
            "seconds": round(seconds, 3),
            **extra,
        }
        self.save(data)

    def invalidate(self, stage_prefix: str) -> None:
        """Forget records of stages starting with `stage_prefix` (for --force)."""
        if not self.exists():
            return
        data = self.load()
        data["stages"] = {k: v for k, v in data["stages"].items() if not k.startswith(stage_prefix)}
        self.save(data)

    def check_writable(self) -> None:
        """Fail early with one line when the scene folder could not be written; creates nothing
        (a run stopped by bad input leaves no empty folder behind)."""
        probe = self.root
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(self.root, f"cannot create scene folder: {probe} is not a folder")
        if not os.access(probe, os.W_OK):
            raise InputError(self.root, f"scene folder is not writable ({probe})")
        if self.root.exists():
            clean_stale_temps(self.root)
