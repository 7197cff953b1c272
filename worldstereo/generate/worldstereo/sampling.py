"""WorldStereo 2.0 sampling: keyframe VAE, the image condition, and the DMD (4-step) and UniPC + CFG loops.

    cond = build_conditions(image, render, hole, K, w2c, prompt_embeds, image_embeds, ...)
    frames = sample_keyframes(models.transformer, models.vae, cond, models.cfg, device="cuda")  # [21, H, W, 3] uint8

Keyframes are VAE-encoded and decoded one frame at a time (the release's "keyframe latent space"),
so 21 frames give 21 latent frames; the first-frame condition is the standard Wan I2V one (the
image followed by 80 black frames through the temporal VAE, 4 mask channels set on latent frame 0).
"""

from __future__ import annotations

import html
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch

from worldstereo.errors import InputError
from worldstereo.generate.worldstereo.conditioning import (camera_pose_vectors, normalize_cameras,
                                                           normalize_cameras_with_references, plucker_rays)
from worldstereo.generate.worldstereo.config import ReleaseConfig

WAN_FRAMES = 81  # the video length the base model's first-frame condition is built for
TEXT_TOKENS = 512  # UMT5 context length; the cross-attention splits image tokens off by it


@contextmanager
def on_device(module: torch.nn.Module, device: torch.device, offload: bool) -> Iterator[torch.nn.Module]:
    """With `offload`, move a model to `device` for one use and back to CPU after (model CPU offload)."""
    if offload:
        module.to(device)
    try:
        yield module
    finally:
        if offload:
            module.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _latent_stats(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, dtype=like.dtype, device=like.device).view(1, z, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=like.dtype, device=like.device).view(1, z, 1, 1, 1)
    return mean, std


def keyframe_encode(vae, video: torch.Tensor) -> torch.Tensor:
    """Video [B, 3, F, H, W] in [-1, 1] → normalised latents [B, z, F, H/8, W/8], each frame on its own."""
    video = video.to(vae.dtype)
    frames = [vae.encode(video[:, :, i:i + 1]).latent_dist.mode() for i in range(video.shape[2])]
    lat = torch.cat(frames, dim=2)
    mean, std = _latent_stats(vae, lat)
    return (lat - mean) / std


def keyframe_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents [B, z, F, h, w] → video [B, 3, F, 8h, 8w] in [-1, 1], each frame on its own."""
    latents = latents.to(vae.dtype)
    mean, std = _latent_stats(vae, latents)
    latents = latents * std + mean
    frames = [vae.decode(latents[:, :, i:i + 1], return_dict=False)[0] for i in range(latents.shape[2])]
    return torch.cat(frames, dim=2).clamp(-1, 1)


def image_condition(vae, image: torch.Tensor, n_latent: int, mode: str = "full_vae") -> torch.Tensor:
    """First-frame condition [B, 4 + z, n_latent, h, w]: 4 mask channels (1 on latent frame 0), then latents.

    full_vae: the image followed by black frames through the temporal VAE (81 frames → 21 latents);
    first_frame_only: the image and one black frame encoded alone, the black latent repeated.
    """
    image = image.to(vae.dtype)[:, :, None]  # [B, 3, 1, H, W]
    t = 2 ** sum(vae.config.temperal_downsample)
    if mode == "full_vae":
        video = torch.cat([image, image.new_zeros(*image.shape[:2], (n_latent - 1) * t, *image.shape[3:])], dim=2)
        lat = vae.encode(video).latent_dist.mode()
    elif mode == "first_frame_only":
        first = vae.encode(image).latent_dist.mode()
        black = vae.encode(torch.zeros_like(image)).latent_dist.mode()
        lat = torch.cat([first, black.repeat(1, 1, n_latent - 1, 1, 1)], dim=2)
    else:
        raise ValueError(f"unknown latent_cond_mode {mode!r}")
    mean, std = _latent_stats(vae, lat)
    lat = (lat - mean) / std
    mask = torch.zeros(lat.shape[0], 4, *lat.shape[2:], dtype=lat.dtype, device=lat.device)
    mask[:, :, 0] = 1
    return torch.cat([mask, lat], dim=1)


def dmd_timesteps(start: float, end: float, steps: int, shift: float) -> torch.Tensor:
    """The distilled model's timesteps in [0, end], high to low: linspace(start, end, steps) reversed,
    then the flow shift σ' = shift·σ / (1 + (shift − 1)·σ) on σ = t / end."""
    sigma = torch.from_numpy(np.linspace(start, end, steps, dtype=np.float32)[::-1].copy()) / end
    return shift * sigma / (1 + (shift - 1) * sigma) * end


def dmd_step(velocity: torch.Tensor, latents: torch.Tensor, timesteps: torch.Tensor, i: int, end: float) -> torch.Tensor:
    """Euler step of the flow from σ_i to σ_{i+1} (0 after the last): x + (σ_{i+1} − σ_i)·v."""
    sigma = float(timesteps[i]) / end
    sigma_next = float(timesteps[i + 1]) / end if i + 1 < len(timesteps) else 0.0
    return latents + (sigma_next - sigma) * velocity.float()


@dataclass
class KeyframeConditions:
    """Model inputs for one trajectory (batch 1, CPU tensors; F keyframes at the bucket size H × W)."""

    image: torch.Tensor  # [1, 3, H, W] in [-1, 1]
    render: torch.Tensor  # [1, 3, F, H, W] in [-1, 1], frame 0 = the input image
    hole: torch.Tensor  # [1, 1, F, H, W] {0, 1}, 1 = the cache has nothing
    plucker: torch.Tensor  # [1, 6, F, H, W] of the normalised cameras
    prompt_embeds: torch.Tensor  # [1, 512, text_dim]
    image_embeds: torch.Tensor  # [1, tokens, image_dim] (CLIP penultimate layer)
    negative_prompt_embeds: torch.Tensor | None = None  # CFG variants
    reference: torch.Tensor | None = None  # [1, 3, R, H, W] in [-1, 1], memory variants
    ref_index: torch.Tensor | None = None  # [R] int64
    camera_qt: torch.Tensor | None = None  # [1, F, 7]
    camera_qt_ref: torch.Tensor | None = None  # [1, R, 7]


def build_conditions(image: torch.Tensor, render: torch.Tensor, hole: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor,
                     prompt_embeds: torch.Tensor, image_embeds: torch.Tensor,
                     negative_prompt_embeds: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                     ref_index: list[int] | None = None, w2c_ref: torch.Tensor | None = None) -> KeyframeConditions:
    """Assemble the inputs from the scene: image [3, H, W], render [F, 3, H, W] (both in [-1, 1]),
    hole [F, H, W], K [F, 3, 3] at H × W, w2c [F, 4, 4]; memory: reference [R, 3, H, W], w2c_ref [R, 4, 4]."""
    n, _, h, w = render.shape
    render = render.clone()
    render[0] = image  # the input image replaces the cache render of frame 0
    cond = KeyframeConditions(
        image=image[None], render=render.permute(1, 0, 2, 3)[None], hole=hole.float()[None, None],
        plucker=plucker_rays(K, normalize_cameras(w2c), h, w)[None], prompt_embeds=prompt_embeds,
        image_embeds=image_embeds, negative_prompt_embeds=negative_prompt_embeds)
    if reference is not None:
        if ref_index is None or w2c_ref is None or not len(ref_index) == reference.shape[0] == w2c_ref.shape[0]:
            raise ValueError("references need one ref_index and one w2c each")
        tgt, ref = normalize_cameras_with_references(w2c, w2c_ref)
        cond.reference = reference.permute(1, 0, 2, 3)[None]
        cond.ref_index = torch.as_tensor(ref_index, dtype=torch.int64)
        cond.camera_qt = camera_pose_vectors(tgt)[None]
        cond.camera_qt_ref = camera_pose_vectors(ref)[None]
    return cond


def _branch_inputs(cond: KeyframeConditions, vae, device: torch.device, dtype: torch.dtype) -> dict:
    """Encoded, device-side keyword arguments of WorldStereoTransformer.forward."""
    kw = dict(render_latent=keyframe_encode(vae, cond.render.to(device)).to(dtype),
              render_mask=cond.hole.to(device, dtype), camera_embedding=cond.plucker.to(device, dtype))
    if cond.reference is not None:
        ref = keyframe_encode(vae, cond.reference.to(device))
        ones = torch.ones_like(ref[:, :4])  # reference latents read as "fully known" frames
        kw.update(reference_latent=torch.cat([ref, ones, ref], dim=1).to(dtype), ref_index=cond.ref_index,
                  camera_qt=cond.camera_qt.to(device), camera_qt_ref=cond.camera_qt_ref.to(device))
    return kw


def sample_keyframes(transformer, vae, cond: KeyframeConditions, cfg: ReleaseConfig, device: str | torch.device = "cpu",
                     offload: bool = False, scheduler=None, steps: int = 40, guidance: float = 5.0,
                     seed: int = 0, output: Literal["frames", "latents"] = "frames") -> np.ndarray | torch.Tensor:
    """Generate the trajectory's keyframes: [F, H, W, 3] uint8 (or the final latents [1, z, F, h, w]).

    memory-dmd: its own 4-step flow schedule, no CFG. camera / memory: `scheduler` (the base model's
    UniPC, `steps` steps) with classifier-free guidance on the negative prompt.
    """
    device = torch.device(device)
    dtype = transformer.patch_embedding.weight.dtype
    n, (h, w) = cond.render.shape[2], cond.render.shape[3:]
    with torch.no_grad(), on_device(vae, device, offload):
        condition = image_condition(vae, cond.image.to(device), n, cfg.latent_cond_mode).to(dtype)
        kw = _branch_inputs(cond, vae, device, dtype)
    generator = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn(1, vae.config.z_dim, n, h // 8, w // 8, generator=generator).to(device)
    text = cond.prompt_embeds.to(device, dtype)
    image_ctx = cond.image_embeds.to(device, dtype)
    with torch.no_grad(), on_device(transformer, device, offload):
        def velocity(t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            x = torch.cat([latents.to(dtype), condition], dim=1)
            return transformer(x, t.expand(1).to(device), context, image_ctx, **kw).float()

        if cfg.variant == "worldstereo-memory-dmd":
            timesteps = dmd_timesteps(cfg.dmd_start_steps, cfg.dmd_end_steps, cfg.dmd_steps, cfg.gen_shift)
            for i, t in enumerate(timesteps):
                latents = dmd_step(velocity(t, text), latents, timesteps, i, cfg.dmd_end_steps)
        else:
            if scheduler is None or cond.negative_prompt_embeds is None:
                raise ValueError(f"{cfg.variant} needs the base model's scheduler and negative prompt embeddings")
            negative = cond.negative_prompt_embeds.to(device, dtype)
            scheduler.set_timesteps(steps, device=device)
            for t in scheduler.timesteps:
                v = velocity(t, text)
                if guidance > 1:
                    v_neg = velocity(t, negative)
                    v = v_neg + guidance * (v - v_neg)
                latents = scheduler.step(v, t, latents, return_dict=False)[0]
    if output == "latents":
        return latents
    with torch.no_grad(), on_device(vae, device, offload):
        video = keyframe_decode(vae, latents)  # [1, 3, F, H, W]
    frames = ((video[0].permute(1, 2, 3, 0).float().cpu() + 1) * 127.5).round().clamp(0, 255)
    return frames.to(torch.uint8).numpy()


def clean_prompt(text: str) -> str:
    """The release's prompt cleaning: ftfy repair, double HTML unescape, whitespace collapsed."""
    import ftfy

    return re.sub(r"\s+", " ", html.unescape(html.unescape(ftfy.fix_text(text))).strip()).strip()


def encode_prompt(tokenizer, text_encoder, prompt: str, device: torch.device) -> torch.Tensor:
    """UMT5 embeddings [1, 512, D], zero past the prompt's tokens (as Wan pipelines pad)."""
    tokens = tokenizer([clean_prompt(prompt)], padding="max_length", max_length=TEXT_TOKENS, truncation=True,
                       add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    n = int(tokens.attention_mask.sum())
    with torch.no_grad():
        emb = text_encoder(tokens.input_ids.to(device), tokens.attention_mask.to(device)).last_hidden_state
    emb = emb.float().cpu()
    emb[:, n:] = 0
    return emb


def encode_image(image_processor, image_encoder, image_rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """CLIP penultimate hidden states [1, 257, 1280] of the input image (uint8 [H, W, 3]).

    As in the release, the uint8 image goes to a processor loaded with do_rescale=False (see
    docs/worldstereo_model.md): the weights were tuned with that input, so it is not "fixed" here.
    """
    pixels = image_processor(images=image_rgb, return_tensors="pt").pixel_values
    with torch.no_grad():
        out = image_encoder(pixel_values=pixels.to(device, image_encoder.dtype), output_hidden_states=True)
    return out.hidden_states[-2].float().cpu()


def prompt_from_json(path: str | Path) -> str:
    """The prompt of a release prompt.json: `prompt`, else `long caption`."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(p, f"cannot read prompt JSON: {e}") from None
    for key in ("prompt", "long caption"):
        if isinstance(data, dict) and isinstance(data.get(key), str) and data[key].strip():
            return data[key]
    raise InputError(p, "no non-empty 'prompt' (or 'long caption') string")
