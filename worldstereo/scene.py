"""SceneDir: the on-disk scene folder shared by all stages, its typed manifest, stage records and lock.

Stage records form a dependency graph: each record holds its `key` (a hash of the stage's config and
of the content of outside inputs), a `run` id that changes whenever the stage is executed, and the
run ids of the upstream stages it consumed. A stage is current when its key matches, its outputs
exist and every input it consumed is still the current run of a current upstream stage; rerunning
any stage therefore makes everything downstream stale, and consumers refuse stale inputs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

from worldstereo import SCHEMA_VERSION, __version__
from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_write_text, clean_stale_temps
from worldstereo.io.dataclass_json import from_dict, read_json, to_jsonable

LOCK_NAME = ".worldstereo.lock"


def config_hash(*parts: Any) -> str:
    """Stable short hash of dataclasses / JSON-able values (a stage's config and its inputs)."""
    blob = json.dumps(to_jsonable(list(parts), float_digits=12), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def file_digest(*paths: str | Path) -> str:
    """Content hash of files (their bytes, in order): the identity of an outside input."""
    h = hashlib.sha1()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- manifest types


@dataclass
class DepthSource:
    """Where the input view's depth came from (shown in the summary; `fallback` is said loudly)."""

    kind: str  # file | model | prior | example-gt | results
    path: Optional[str] = None
    fallback: bool = False
    note: str = ""


@dataclass
class StageRecord:
    """One finished stage: what it was keyed on, what it consumed, what it wrote."""

    key: str
    """Hash of the stage's config and of the content of the outside files it read."""
    run: str
    """Id of this execution; a rerun gets a new one, which makes the consumers of this stage stale."""
    finished: str
    seconds: float
    outputs: list[str] = field(default_factory=list)
    """Files and folders written, relative to the scene root."""
    inputs: dict[str, str] = field(default_factory=dict)
    """Upstream stage → the run id of it that this stage consumed."""
    info: dict[str, Any] = field(default_factory=dict)
    """Stage-specific figures (alignment residuals, backend, PSNR, …)."""


@dataclass
class SceneManifest:
    """scene.json: what the scene is made from, its working camera, and the stage records."""

    schema_version: int = SCHEMA_VERSION
    worldstereo: str = __version__
    input_kind: Literal["image", "external", "synthetic", "panorama"] = "image"
    working_size: Optional[tuple[int, int]] = None
    """(W, H) of the reference view and every generated frame (a panorama: of its bank views)."""
    panorama_size: Optional[tuple[int, int]] = None
    """(W, H) of input/panorama.png (panoramas only)."""
    input_depth_meaning: Literal["z-depth", "ray-distance"] = "z-depth"
    """What input/depth.npy holds: the reference view's z-depth, or (a panorama) the distance along
    each equirect pixel's ray."""
    K: Optional[list[list[float]]] = None
    camera_source: Optional[str] = None
    depth_source: Optional[DepthSource] = None
    pivot_depth_m: Optional[float] = None
    valid_depth_fraction: Optional[float] = None
    cache_points: dict[str, int] = field(default_factory=dict)
    voxel_m: Optional[float] = None
    trajectory_order: list[str] = field(default_factory=list)
    config: Optional[dict[str, Any]] = None
    """The resolved GenerationConfig run_pipeline.py used (the single-stage scripts start from it)."""
    stages: dict[str, StageRecord] = field(default_factory=dict)


StageState = Literal["missing", "changed", "incomplete", "stale", "current"]


@dataclass
class StageStatus:
    state: StageState
    reason: str = ""

    @property
    def current(self) -> bool:
        return self.state == "current"


# --------------------------------------------------------------------------- the folder


class SceneDir:
    """Paths, manifest, stage records and writer lock of one scene folder (layout in docs/pipeline.md)."""

    def __init__(self, root: str | Path):
        # absolute from the start: records and messages must not depend on the working directory
        self.root = Path(os.path.abspath(os.path.expanduser(str(root))))

    # ---- paths of the scene-folder contract
    @property
    def manifest_path(self) -> Path:
        return self.root / "scene.json"

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def input_image(self) -> Path:
        return self.root / "input" / "image.png"

    @property
    def input_panorama(self) -> Path:
        """The equirect panorama at working size (panoramic scenes only)."""
        return self.root / "input" / "panorama.png"

    @property
    def input_depth(self) -> Path:
        return self.root / "input" / "depth.npy"

    def trajectory(self, name: str) -> Path:
        return self.root / "trajectories" / f"{name}.json"

    def conditions(self, name: str) -> Path:
        return self.root / "conditions" / name

    def video(self, name: str) -> Path:
        return self.root / "videos" / f"{name}.mp4"

    def contact_sheet(self, name: str) -> Path:
        return self.root / "videos" / f"{name}_sheet.png"

    def frames(self, name: str) -> Path:
        """Lossless generated frames (000000.png …), depth.npy and conf.npy of one trajectory."""
        return self.root / "frames" / name

    def frame_depth(self, name: str) -> Path:
        """depth.npy / conf.npy that update_cache estimated for a pixel-only backend's frames."""
        return self.root / "frame_depth" / name

    @staticmethod
    def frame_png(frames_dir: Path, j: int) -> Path:
        return frames_dir / f"{j:06d}.png"

    @property
    def memory_bank(self) -> Path:
        return self.root / "memory_bank"

    @property
    def bank_index(self) -> Path:
        return self.memory_bank / "index.json"

    @property
    def cache_ply(self) -> Path:
        """The 3D cache after the last merged trajectory (a copy of the newest cache/step_*.ply)."""
        return self.root / "cache.ply"

    @property
    def world_ply(self) -> Path:
        """The cache's trusted points (confidence ≥ memory.cache.WORLD_MIN_CONF), written by export."""
        return self.root / "world.ply"

    def cache_step(self, step: int) -> Path:
        """The cache as it stood after plan step `step` (0 = the input view): exact rollback points."""
        return self.root / "cache" / f"step_{step:02d}.ply"

    @property
    def results_npz(self) -> Path:
        return self.root / "exports" / "npz" / "results.npz"

    @property
    def frames_json(self) -> Path:
        """Which trajectory and frame each results.npz frame is."""
        return self.results_npz.with_name("frames.json")

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def align_dir(self) -> Path:
        return self.root / "align"

    @property
    def canonical_ply(self) -> Path:
        return self.align_dir / "canonical.ply"

    @property
    def deformations_npz(self) -> Path:
        return self.align_dir / "deformations.npz"

    def gs_dir(self, renderer: str) -> Path:
        return self.root / f"gs_{renderer}"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    # ---- manifest
    def exists(self) -> bool:
        return self.manifest_path.exists()

    def load(self) -> SceneManifest:
        """Read scene.json; an unreadable, foreign or newer-schema manifest is a one-line InputError."""
        path = self.manifest_path
        data = read_json(path, "no scene here: run run_pipeline.py first (or check --scene)", "scene manifest")
        if not isinstance(data, dict):
            raise InputError(path, f"scene manifest must be a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise InputError(path, "scene manifest has no schema_version")
        if version > SCHEMA_VERSION:
            raise InputError(path, f"scene was written by a newer schema (v{version}; this worldstereo {__version__} "
                                   f"reads v{SCHEMA_VERSION}): upgrade worldstereo")
        if version < SCHEMA_VERSION:
            data["stages"] = {}  # older records have no run ids: every stage is redone once
        try:
            return from_dict(SceneManifest, data)
        except (TypeError, ValueError, KeyError) as e:
            raise InputError(path, f"scene manifest has a malformed field ({e})")

    def load_or_new(self) -> SceneManifest:
        return self.load() if self.exists() else SceneManifest()

    def save(self, manifest: SceneManifest) -> None:
        manifest.schema_version = SCHEMA_VERSION
        manifest.worldstereo = __version__
        atomic_write_text(self.manifest_path, json.dumps(to_jsonable(manifest), indent=1))

    def update(self, **fields: Any) -> SceneManifest:
        m = self.load_or_new()
        for k, v in fields.items():
            if not hasattr(m, k):
                raise AttributeError(f"SceneManifest has no field {k!r}")
            setattr(m, k, v)
        self.save(m)
        return m

    # ---- stage records and the dependency graph
    def stage_record(self, stage: str) -> StageRecord | None:
        return self.load().stages.get(stage) if self.exists() else None

    def status(self, stage: str, key: str | None = None) -> StageStatus:
        """Whether `stage` is current (key given: also that its config and outside inputs match)."""
        stages = self.load().stages if self.exists() else {}
        return _status(self.root, stages, stage, key, {})

    def is_current(self, stage: str, key: str) -> bool:
        return self.status(stage, key).current

    def require_current(self, stage: str, what: Path) -> StageRecord:
        """The record of `stage`, whose outputs a consumer is about to read; stale → one-line InputError."""
        stages = self.load().stages if self.exists() else {}
        st = _status(self.root, stages, stage, None, {})
        if not st.current:
            word = "has not run" if st.state == "missing" else f"is {st.state}"
            raise InputError(what, f"{stage} {word} ({st.reason}): refresh it with `{refresh_command(self, stage)}`")
        return stages[stage]

    def record_stage(self, stage: str, key: str, outputs: list[str | Path], seconds: float,
                     inputs: dict[str, str] | None = None, **info: Any) -> StageRecord:
        """Record a finished execution of `stage` and say in one line what became stale by it."""
        m = self.load_or_new()
        before = {s for s in m.stages if s != stage and _status(self.root, m.stages, s, None, {}).current}
        rec = StageRecord(key=key, run=uuid.uuid4().hex[:12], finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          seconds=round(seconds, 3), outputs=[self.relative(o) for o in outputs],
                          inputs=dict(inputs or {}), info=to_jsonable(info))
        m.stages[stage] = rec
        self.save(m)
        now_stale = [s for s in m.stages if s in before and not _status(self.root, m.stages, s, None, {}).current]
        if now_stale:
            _say_stale(self, stage, now_stale)
        return rec

    def relative(self, path: str | Path) -> str:
        p = Path(path)
        return os.path.relpath(p if p.is_absolute() else self.root / p, self.root)

    # ---- writing
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

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the scene's writer lock (re-entrant in one process). A second writer gets a one-line
        error naming the holder; the lock of a process that died is free again (the kernel drops it)."""
        key = str(self.root)
        if key in _HELD:
            _HELD[key][1] += 1
            try:
                yield
            finally:
                _HELD[key][1] -= 1
            return
        self.check_writable()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise InputError(self.root, f"cannot create the scene folder or its lock ({e.strerror})")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise InputError(self.root, f"scene is in use by another writer ({holder}): wait for it to finish")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
        _HELD[key] = [fd, 1]
        try:
            clean_stale_temps(self.root)  # only the lock holder may remove leftovers of interrupted writes
            yield
        finally:
            del _HELD[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


_HELD: dict[str, list] = {}  # scene root → [fd, depth] of the locks this process holds


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info.get('host', '?')}: {info.get('command', '?')}, since {info.get('since', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _status(root: Path, stages: dict[str, StageRecord], stage: str, key: str | None,
            memo: dict[str, StageStatus]) -> StageStatus:
    if key is None and stage in memo:
        return memo[stage]
    rec = stages.get(stage)
    if rec is None:
        st = StageStatus("missing", "no record")
    elif key is not None and rec.key != key:
        st = StageStatus("changed", "its config or input files changed")
    else:
        st = StageStatus("current")
        missing = [o for o in rec.outputs if not (root / o).exists()]
        if missing:
            st = StageStatus("incomplete", f"output {missing[0]} is missing")
        for up, run in rec.inputs.items():
            if not st.current:
                break
            up_rec = stages.get(up)
            if up_rec is None:
                st = StageStatus("stale", f"its input {up} has no record")
            elif up_rec.run != run:
                st = StageStatus("stale", f"{up} was rerun after it")
            elif not _status(root, stages, up, None, memo).current:
                st = StageStatus("stale", f"its input {up} is not current")
    if key is None:
        memo[stage] = st
    return st


def refresh_command(scene: SceneDir, stage: str) -> str:
    """The command that brings `stage` up to date."""
    if stage == "reconstruct":
        return f"python reconstruct.py --scene {scene.root}"
    if stage.startswith("train_gs_"):
        return f"python train_gs.py --scene {scene.root} --renderer {stage.removeprefix('train_gs_')}"
    return f"python run_pipeline.py --scene {scene.root}"


def _say_stale(scene: SceneDir, stage: str, stale: list[str]) -> None:
    names = ", ".join(stale[:4]) + (f", … ({len(stale)} in all)" if len(stale) > 4 else "")
    cmds = []
    for s in stale:
        c = refresh_command(scene, s)
        if c not in cmds:
            cmds.append(c)
    print(f"[{stage}] rerun: now stale: {names} — refresh with: {' ; '.join(cmds)}", flush=True)
