"""The WorldStereo 2.0 backends behind the generator protocol: GenerationRequest in, keyframes out.

    gen = WorldStereoGenerator(WorldStereoGeneratorConfig("worldstereo-memory-dmd", weights, base_model,
                                                          prompt="a sunlit kitchen", offload=True))
    frames = gen.generate(request)          # GeneratedFrames: pixels only (depth / conf None)

The models load on the first `generate` (diffusers is imported then, not before). A trajectory
must have the variant's keyframe count (21): plan 21 frames per trajectory for this backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from worldstereo.errors import InputError
from worldstereo.generate.base import GeneratedFrames, GenerationRequest
from worldstereo.generate.worldstereo.conditioning import (cap_references, reference_layout, rescale_intrinsics,
                                                           resize_hole_mask, resolution_bucket)
from worldstereo.generate.worldstereo.config import Variant
from worldstereo.generate.worldstereo.sampling import build_conditions, encode_image, encode_prompt, sample_keyframes


@dataclass
class WorldStereoGeneratorConfig:
    """What a user chooses for a WorldStereo 2.0 run."""

    variant: Variant
    weights: Path  # release root or variant folder (config.json + model.safetensors)
    base_model: Path  # local Wan2.1-I2V-14B-480P-Diffusers folder
    prompt: str = ""
    negative_prompt: str | None = None  # None: the variant config's negative prompt
    prompt_embeds: Path | None = None  # safetensors with prompt_embeds [1, 512, D] (+ negative_prompt_embeds):
    # the text encoder is then never loaded
    device: str = "cuda"
    offload: bool = False  # keep models on CPU between uses (48 GB cards; measured peak 43.6 GiB)
    steps: int = 40  # camera / memory (UniPC); memory-dmd uses its own 4 steps
    guidance: float = 5.0  # camera / memory classifier-free guidance
    seed: int = 0
    max_references: int = 8  # the release's cap on distinct references per trajectory


def to_model_range(rgb: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 [..., h, w, 3] → float [..., 3, H, W] in [-1, 1], bicubic-resized and clipped (as the release)."""
    flat = rgb.reshape(-1, *rgb.shape[-3:])
    out = [cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in flat]
    t = torch.from_numpy(np.stack(out)).float().permute(0, 3, 1, 2) / 127.5 - 1
    return t.clamp(-1, 1).reshape(*rgb.shape[:-3], 3, height, width)


def release_intrinsics(K: np.ndarray, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> torch.Tensor:
    """Our K (pixel centres at integers) → the release's convention (centres at +0.5), scaled to dst."""
    K_edge = torch.as_tensor(np.asarray(K, np.float64)).clone()
    K_edge[..., :2, 2] += 0.5
    return rescale_intrinsics(K_edge.reshape(-1, 3, 3), src_wh, dst_wh)


def load_prompt_embeds(path: Path, need_negative: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Precomputed UMT5 embeddings from a safetensors file: `prompt_embeds` [1, 512, D] and, for the CFG
    variants, `negative_prompt_embeds` of the same shape; a missing or malformed one is an InputError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise InputError(path, f"not a readable safetensors file ({e.__class__.__name__})") from None
    names = ["prompt_embeds"] + (["negative_prompt_embeds"] if need_negative else [])
    for name in names:
        t = tensors.get(name)
        if t is None or t.ndim != 3 or t.shape[0] != 1:
            raise InputError(path, f"needs a tensor '{name}' of shape [1, tokens, width]")
    return tensors["prompt_embeds"].float(), tensors["negative_prompt_embeds"].float() if need_negative else None


class WorldStereoGenerator:
    """Generator protocol implementation for the three released variants."""

    def __init__(self, cfg: WorldStereoGeneratorConfig, models=None):
        self.cfg = cfg
        self.name = cfg.variant
        self._models = models  # tests inject tiny models; otherwise loaded on first use

    def models(self):
        if self._models is None:
            from worldstereo.generate.worldstereo.loader import load_worldstereo

            self._models = load_worldstereo(self.cfg.weights, self.cfg.base_model, self.cfg.variant,
                                            device=self.cfg.device, offload=self.cfg.offload,
                                            with_text_encoder=self.cfg.prompt_embeds is None)
        return self._models

    def generate(self, req: GenerationRequest, progress_desc: str = "") -> GeneratedFrames:
        m = self.models()
        n, h0, w0 = len(req.trajectory), req.trajectory.height, req.trajectory.width
        if n != m.cfg.nframe:
            raise InputError(None, f"{self.name} makes {m.cfg.nframe} keyframes per trajectory, this one has {n}: "
                                   f"plan {m.cfg.nframe} frames for it")
        h, w = resolution_bucket(h0, w0, m.cfg.scale_map)
        image_rgb = self._input_image(req)
        render = to_model_range(req.cond_rgb, h, w)
        hole = resize_hole_mask(torch.from_numpy(req.cond_hole), h, w)
        K = release_intrinsics(req.trajectory.K(), (w0, h0), (w, h))
        w2c = torch.linalg.inv(torch.as_tensor(req.trajectory.c2w()))
        refs = self._references(req, h, w) if self.name != "worldstereo-camera" else {}
        prompt, negative, image_ctx = self._embeddings(image_rgb)
        cond = build_conditions(to_model_range(image_rgb, h, w), render, hole, K, w2c, prompt, image_ctx,
                                negative_prompt_embeds=negative, **refs)
        scheduler = None
        if self.name != "worldstereo-memory-dmd":
            from diffusers import UniPCMultistepScheduler

            scheduler = UniPCMultistepScheduler.from_pretrained(str(m.base_root), subfolder="scheduler",
                                                                local_files_only=True)
        frames = sample_keyframes(m.transformer, m.vae, cond, m.cfg, device=m.device, offload=m.offload,
                                  scheduler=scheduler, steps=self.cfg.steps, guidance=self.cfg.guidance,
                                  seed=self.cfg.seed)
        rgb = np.stack([cv2.resize(f, (w0, h0), interpolation=cv2.INTER_AREA) for f in frames])
        notes = f"{m.report.line()}; {len(refs.get('ref_index', []))} references; bucket {h}x{w}"
        return GeneratedFrames(rgb=rgb, depth=None, conf=None, backend=self.name, notes=notes)

    def _input_image(self, req: GenerationRequest) -> np.ndarray:
        """The input view (memory-bank entry of source `input`): the model's frame 0 and image condition."""
        inputs = [e for e in req.bank.entries if e.source == "input"]
        if not inputs:
            raise InputError(req.bank.root / "index.json", "no input view in the memory bank")
        return req.bank.image(inputs[0])

    def _references(self, req: GenerationRequest, h: int, w: int) -> dict:
        """Distinct retrieved memory frames in first-retrieval order, their ref_index and w2c."""
        by_frame = {r.frame: r.ref_id for r in req.references}
        visible = {e.id: e for e in req.bank.visible_before(req.step)}
        retrieved = [by_frame.get(i) for i in range(1, len(req.trajectory))]
        retrieved = cap_references([i if i in visible else None for i in retrieved], self.cfg.max_references)
        order = reference_layout(retrieved)
        pairs = list(zip(order.bank_ids, order.ref_index))
        if not pairs:  # nothing retrieved: the input view is the reference, beside frame 1 (as the release)
            pairs = [(next(e.id for e in req.bank.entries if e.source == "input"), 0)]
        by_id = {e.id: e for e in req.bank.entries}
        entries = [by_id[b] for b, _ in pairs]
        images = np.stack([cv2.resize(req.bank.image(e), (w, h), interpolation=cv2.INTER_CUBIC) for e in entries])
        w2c_ref = torch.linalg.inv(torch.as_tensor(np.stack([np.asarray(e.c2w, np.float64) for e in entries])))
        return dict(reference=to_model_range(images, h, w), ref_index=[r for _, r in pairs], w2c_ref=w2c_ref)

    def _embeddings(self, image_rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Prompt, negative prompt (CFG variants) and CLIP image embeddings, encoders moved as offload says."""
        from worldstereo.generate.worldstereo.sampling import on_device

        m = self.models()
        negative_text = m.cfg.negative_prompt if self.cfg.negative_prompt is None else self.cfg.negative_prompt
        if self.cfg.prompt_embeds is not None:
            prompt, negative = load_prompt_embeds(self.cfg.prompt_embeds, need_negative=self.name != "worldstereo-memory-dmd")
        else:
            with on_device(m.text_encoder, m.device, m.offload):
                prompt = encode_prompt(m.tokenizer, m.text_encoder, self.cfg.prompt, m.device)
                negative = (encode_prompt(m.tokenizer, m.text_encoder, negative_text, m.device)
                            if self.name != "worldstereo-memory-dmd" else None)
        with on_device(m.image_encoder, m.device, m.offload):
            image_ctx = encode_image(m.image_processor, m.image_encoder, image_rgb, m.device)
        return prompt, negative, image_ctx
