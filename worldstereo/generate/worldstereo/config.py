"""The released WorldStereo 2.0 variant configs (config.json) and base-model checks, read without torch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from worldstereo.errors import InputError

Variant = Literal["worldstereo-camera", "worldstereo-memory", "worldstereo-memory-dmd"]
VARIANTS: tuple[str, ...] = get_args(Variant)

# The release's resolution buckets, (height, width), used when config.json has no `scale_map`.
DEFAULT_SCALE_MAP: tuple[tuple[int, int], ...] = (
    (480, 768), (512, 720), (576, 640), (608, 608), (640, 576), (720, 512), (768, 480),
)


@dataclass(frozen=True)
class BranchConfig:
    """`controlnet_cfg` of a release config.json: the ControlNet branch and the memory extras.

    Defaults are the release's own defaults for keys its code reads with `.get`.
    """

    dim: int  # branch width
    num_heads: int
    ffn_dim: int
    num_layers: int  # one residual per main block, for the first `num_layers` blocks
    time_embed_dim: int  # width of the main model's time embedding fed to the branch norms
    conv_out_dim: int  # width of the branch's patch / mask embeddings (proj_in maps it to `dim`)
    add_channels: int = 1  # 1 (mask) or 7 (mask + 6 Plücker channels)
    mid_channels: int = 64
    mask_downsample: int = 4  # temporal stride of the mask embedding (1 for 21 keyframes)
    interp: bool = False  # pad the mask video at both ends (first/last-frame interpolation models)
    ref_embedding: bool = False  # an Embedding(21, inner_dim) the release builds and never reads
    main_camera_embedding: bool = False  # MLP from `camera_embedding_dim` (quaternion + t) to inner_dim
    camera_embedding_dim: int = 7
    update_ref: bool = False  # memory: carry reference tokens block to block (else re-feed the input)


@dataclass(frozen=True)
class ReleaseConfig:
    """One variant's config.json, typed. Unknown keys are kept in `extra`."""

    variant: Variant
    branch: BranchConfig
    nframe: int = 21
    scale_map: tuple[tuple[int, int], ...] = DEFAULT_SCALE_MAP
    latent_cond_mode: Literal["full_vae", "first_frame_only"] = "full_vae"
    negative_prompt: str = ""
    dmd_start_steps: int = 250  # memory-dmd only: the 4-step flow schedule
    dmd_end_steps: int = 1000
    dmd_steps: int = 4
    gen_shift: float = 1.0
    extra: dict = field(default_factory=dict)


_BRANCH_REQUIRED = ("dim", "num_heads", "ffn_dim", "num_layers", "time_embed_dim", "conv_out_dim")


def declared_variant(raw: dict) -> Variant:
    """Which variant a config.json is for.

    The release picks the variant by folder name; its configs differ by content too. We read
    `model_type` when present, else: DMD schedule keys → memory-dmd; `update_ref` in the branch
    (read only by the memory model's forward) → memory; otherwise camera.
    """
    declared = raw.get("model_type")
    if declared in VARIANTS:
        return declared  # type: ignore[return-value]
    if "dmd_steps" in raw or "dmd_start_steps" in raw:
        return "worldstereo-memory-dmd"
    if "update_ref" in (raw.get("controlnet_cfg") or {}):
        return "worldstereo-memory"
    return "worldstereo-camera"


def parse_release_config(raw: dict, path: Path, variant: Variant) -> ReleaseConfig:
    """Typed config from a parsed config.json; InputError for a config of another variant or missing keys."""
    if variant not in VARIANTS:
        raise InputError(path, f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    for key in ("base_model", "controlnet_cfg"):
        if key not in raw:
            raise InputError(path, f"missing key {key!r}: not a WorldStereo 2.0 config.json")
    found = declared_variant(raw)
    if found != variant:
        raise InputError(path, f"this config is for {found}, not {variant}: point --weights at the {variant} folder")
    branch_raw = dict(raw["controlnet_cfg"])
    missing = [k for k in _BRANCH_REQUIRED if k not in branch_raw]
    if missing:
        raise InputError(path, f"controlnet_cfg lacks {', '.join(missing)}")
    known = set(BranchConfig.__dataclass_fields__)
    branch = BranchConfig(**{k: v for k, v in branch_raw.items() if k in known})
    if variant != "worldstereo-camera" and "update_ref" not in branch_raw:
        raise InputError(path, "controlnet_cfg lacks update_ref, which the memory model needs")
    top_known = set(ReleaseConfig.__dataclass_fields__) - {"variant", "branch", "extra"}
    top = {k: raw[k] for k in top_known if k in raw}
    if "scale_map" in top:
        top["scale_map"] = tuple(tuple(int(x) for x in hw) for hw in top["scale_map"])
    extra = {k: v for k, v in raw.items() if k not in top_known and k not in ("controlnet_cfg",)}
    return ReleaseConfig(variant=variant, branch=branch, extra=extra, **top)


@dataclass(frozen=True)
class WeightFiles:
    """The two files of a released variant folder."""

    config: Path
    safetensors: Path


def variant_files(weights_dir: str | Path, variant: Variant) -> WeightFiles:
    """Locate config.json + model.safetensors in `weights_dir` or `weights_dir/<variant>`.

    A user may point at the release root (with one folder per variant) or at the variant folder.
    """
    root = Path(weights_dir).expanduser()
    if not root.is_dir():
        raise InputError(root, "weights folder not found")
    folder = root / variant if (root / variant).is_dir() else root
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise InputError(folder / name, f"missing: a {variant} weights folder holds config.json and model.safetensors")
    return WeightFiles(folder / "config.json", folder / "model.safetensors")


def read_json(path: Path) -> dict:
    """A JSON object from disk, or a one-line InputError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"cannot read JSON: {e}") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object")
    return data


def load_release_config(weights_dir: str | Path, variant: Variant) -> tuple[ReleaseConfig, WeightFiles]:
    """Find and parse one variant's config.json."""
    files = variant_files(weights_dir, variant)
    return parse_release_config(read_json(files.config), files.config, variant), files


@dataclass(frozen=True)
class BaseModelLayout:
    """The Wan2.1 I2V base model folder in diffusers layout, as far as WorldStereo needs it."""

    root: Path
    transformer: dict  # transformer/config.json
    inner_dim: int
    has_text_encoder: bool
    has_image_encoder: bool


FULL_SIZE_WIDTH = 5120  # Wan2.1 14B; the release's branch output width is hard-coded to it
I2V_IN_CHANNELS = 36  # 16 noisy latents + 4 first-frame mask channels + 16 image-condition latents


def check_base_model(base_dir: str | Path, need_text: bool = True, need_image: bool = True,
                     need_scheduler: bool = False) -> BaseModelLayout:
    """Check a local diffusers-layout Wan2.1 I2V folder has what generation reads; InputError naming the gap."""
    root = Path(base_dir).expanduser()
    if not root.is_dir():
        raise InputError(root, "base model folder not found (Wan2.1-I2V-14B-480P-Diffusers, local copy)")
    needed = ["transformer/config.json", "vae/config.json"]
    if need_text:
        needed += ["text_encoder/config.json", "tokenizer"]
    if need_image:
        needed += ["image_encoder/config.json", "image_processor"]
    if need_scheduler:
        needed += ["scheduler/scheduler_config.json"]
    for rel in needed:
        if not (root / rel).exists():
            raise InputError(root / rel, "missing from the base model folder")
    tcfg = read_json(root / "transformer/config.json")
    if tcfg.get("in_channels") != I2V_IN_CHANNELS or tcfg.get("image_dim") is None:
        raise InputError(root / "transformer/config.json",
                         f"not an image-to-video Wan model (in_channels {tcfg.get('in_channels')}, "
                         f"image_dim {tcfg.get('image_dim')}); WorldStereo 2.0 needs Wan2.1-I2V-14B-480P")
    inner = int(tcfg.get("num_attention_heads", 40)) * int(tcfg.get("attention_head_dim", 128))
    return BaseModelLayout(root, tcfg, inner, need_text, need_image)
