"""Load a released WorldStereo 2.0 variant over a local Wan2.1 I2V base model: checked, counted, offline.

    models = load_worldstereo("~/models/WorldStereo", "~/models/Wan2.1-I2V-14B-480P-Diffusers",
                              "worldstereo-memory-dmd", device="cuda", offload=True)
    print(models.report.line())   # loaded 1234 tensors, 0 from the base model, 0 unexpected, 1 unused

Every file is read with local_files_only; nothing is downloaded. Bad folders raise InputError
naming the file before any large tensor is read. Importing this module imports diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from worldstereo.errors import InputError
from worldstereo.generate.worldstereo.config import (FULL_SIZE_WIDTH, BaseModelLayout, ReleaseConfig, Variant,
                                                     check_base_model, load_release_config)
from worldstereo.generate.worldstereo.model import WorldStereoTransformer

# Parameters the release builds and loads but its forward never reads.
UNUSED_AT_INFERENCE = ("ref_index_embedding.weight",)


@dataclass
class LoadReport:
    """What loading a model.safetensors over the base transformer did."""

    loaded: int  # checkpoint tensors copied into the model
    from_base: int  # model tensors the checkpoint does not hold: they keep the base model's values
    unexpected: list[str] = field(default_factory=list)  # checkpoint tensors with no place in the model
    unused: list[str] = field(default_factory=list)  # loaded, never read at inference (as in the release)

    def line(self) -> str:
        return (f"loaded {self.loaded} tensors, {self.from_base} from the base model, "
                f"{len(self.unexpected)} unexpected, {len(self.unused)} unused at inference")


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header, without reading the tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise InputError(path, f"not a readable safetensors file ({type(e).__name__}: {e})") from None


def check_width(shapes: dict[str, tuple[int, ...]], base: BaseModelLayout, path: Path) -> None:
    """The branch writes into the main stream: its output width must be the base model's width."""
    out = shapes.get("controlnet.proj_out.0.weight")
    if out is None:
        raise InputError(path, "no controlnet.proj_out.0.weight: not a WorldStereo 2.0 model.safetensors")
    if out[0] != base.inner_dim:
        raise InputError(base.root / "transformer/config.json",
                         f"base model width {base.inner_dim} but the weights need {out[0]} "
                         "(WorldStereo 2.0 is trained on Wan2.1-I2V-14B-480P)")


def load_checkpoint_into(model: torch.nn.Module, path: Path) -> LoadReport:
    """Copy model.safetensors into `model` tensor by tensor (peak host memory: one tensor).

    Shape mismatches and unexpected names are errors: the release loads with strict=False and
    would silently ignore them, which for us would mean running weights we do not implement.
    """
    shapes = checkpoint_shapes(path)
    own = model.state_dict()
    unexpected = sorted(k for k in shapes if k not in own)
    if unexpected:
        raise InputError(path, f"{len(unexpected)} tensors have no place in the {getattr(model, 'ws_variant', '')} "
                               f"model (first: {', '.join(unexpected[:3])}): weights of another variant or release?")
    bad = [(k, s, tuple(own[k].shape)) for k, s in shapes.items() if tuple(own[k].shape) != s]
    if bad:
        k, s, want = bad[0]
        raise InputError(path, f"{len(bad)} tensors differ in shape from the model, first {k}: {s} vs {want}")
    with safe_open(str(path), framework="pt") as f, torch.no_grad():
        for k in shapes:
            own[k].copy_(f.get_tensor(k).to(own[k].dtype))
    unused = [k for k in UNUSED_AT_INFERENCE if k in own]
    return LoadReport(loaded=len(shapes), from_base=len(own) - len(shapes), unexpected=[], unused=unused)


def build_transformer(base: BaseModelLayout, cfg: ReleaseConfig, weights: Path,
                      dtype: torch.dtype) -> tuple[WorldStereoTransformer, LoadReport]:
    """Base transformer from its local folder + the release's branch + the release's tensors."""
    model = WorldStereoTransformer.from_pretrained(str(base.root), subfolder="transformer", torch_dtype=dtype,
                                                   local_files_only=True)
    try:
        model.attach_branch(cfg.branch, cfg.variant)
    except ValueError as e:  # a branch config that does not fit this base model
        raise InputError(weights.parent / "config.json", str(e)) from None
    report = load_checkpoint_into(model, weights)
    return model.eval().requires_grad_(False), report


@dataclass
class WorldStereoModels:
    """Everything generation needs, each on CPU (offload) or on `device`."""

    cfg: ReleaseConfig
    transformer: WorldStereoTransformer
    vae: torch.nn.Module
    report: LoadReport
    device: torch.device
    offload: bool
    base_root: Path
    text_encoder: torch.nn.Module | None = None
    tokenizer: object | None = None
    image_encoder: torch.nn.Module | None = None
    image_processor: object | None = None


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (the release's precision), float32 on CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_worldstereo(weights_dir: str | Path, base_dir: str | Path, variant: Variant, device: str = "cuda",
                     offload: bool = False, with_text_encoder: bool = True, with_image_encoder: bool = True,
                     allow_cpu_full_size: bool = False) -> WorldStereoModels:
    """Check both folders, then load. With `offload` every model stays on CPU between its uses."""
    cfg, files = load_release_config(weights_dir, variant)
    base = check_base_model(base_dir, need_text=with_text_encoder, need_image=with_image_encoder,
                            need_scheduler=variant != "worldstereo-memory-dmd")
    check_width(checkpoint_shapes(files.safetensors), base, files.safetensors)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "no CUDA device: WorldStereo 2.0 (14B) needs a GPU; on a 48 GB card add --offload")
    if dev.type == "cpu" and base.inner_dim >= FULL_SIZE_WIDTH and not allow_cpu_full_size:
        raise InputError(base.root, "a 14B model on CPU would take hours per trajectory: use a CUDA GPU "
                                    "(--offload for 48 GB cards) or the geometric generator")
    dtype = pick_dtype(dev)
    transformer, report = build_transformer(base, cfg, files.safetensors, dtype)
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(str(base.root), subfolder="vae", torch_dtype=torch.float32,
                                           local_files_only=True).eval().requires_grad_(False)
    models = WorldStereoModels(cfg, transformer, vae, report, dev, offload, base.root)
    if with_text_encoder:
        _load_text_encoder(models)
    if with_image_encoder:
        _load_image_encoder(models)
    if not offload:
        for m in (models.transformer, models.vae, models.text_encoder, models.image_encoder):
            if m is not None:
                m.to(dev)
    return models


def _load_text_encoder(models: WorldStereoModels) -> None:
    from transformers import AutoTokenizer, UMT5EncoderModel

    root = str(models.base_root)
    models.tokenizer = AutoTokenizer.from_pretrained(root, subfolder="tokenizer", local_files_only=True)
    encoder = UMT5EncoderModel.from_pretrained(root, subfolder="text_encoder", torch_dtype=torch.float32,
                                               local_files_only=True).eval().requires_grad_(False)
    # The release ties the encoder's token embedding to `shared` after loading under transformers 5,
    # where an encoder-only UMT5 checkpoint otherwise leaves it untied; do the same.
    encoder.encoder.embed_tokens = encoder.shared
    models.text_encoder = encoder


def _load_image_encoder(models: WorldStereoModels) -> None:
    from transformers import CLIPImageProcessor, CLIPVisionModel

    root = str(models.base_root)
    models.image_processor = CLIPImageProcessor.from_pretrained(root, subfolder="image_processor", do_rescale=False,
                                                                local_files_only=True)
    models.image_encoder = CLIPVisionModel.from_pretrained(root, subfolder="image_encoder", torch_dtype=torch.float32,
                                                           local_files_only=True).eval().requires_grad_(False)
